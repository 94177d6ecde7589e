"""TLS: a node started with `--tls-cert` and `--tls-key` serves HTTPS only, to clients and to
other nodes alike, and relays requests to other nodes over HTTPS, checking their certificates
against the system's roots and `--tls-ca`. A node that serves HTTPS never relays in clear: a
relayed request carries the client's API key and the cluster's relay token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from alcove.sandbox import SandboxClient
from framework.cli import run_cli
from framework.cluster import (
    container_status,
    node_info,
    nodes_on,
    serve_file,
    terminal_works,
    tunnel_serves,
)
from framework.postgres import PostgresCluster
from framework.server import AlcoveServer, refused_at_start, retire
from framework.host import wait_for
from framework.tls import CertificateAuthority, NodeCert


@pytest.fixture(scope="module")
def pg():
    with PostgresCluster() as cluster:
        yield cluster


def test_tls_nodes_serve_https_and_relay_everything_to_each_other_over_it(pg, tmp_path, monkeypatch):
    ca = CertificateAuthority(tmp_path / "ca")
    names = ["tls-a", "tls-b"]
    args = [ca.issue(name).args(ca.pem) for name in names]
    # What the SDKs and the CLI trust, as a user of a private CA would set it.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.pem))
    with nodes_on(pg.create_database("alcove_tls"), names, node_args=args, tls_cas=[ca.pem] * 2) as (a, b):
        assert a.url.startswith("https://")
        assert node_info(a, "tls-b")["address"] == f"https://127.0.0.1:{b.port}"
        # Plain HTTP gets no answer at all.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://localhost:{a.port}/healthz", timeout=10)

        with SandboxClient(api_url=a.url) as on_a, SandboxClient(api_url=b.url) as on_b:
            made = on_a.create_and_connect(name="tls-on-a")
            try:
                assert container_status(a.data_dir, made.sandbox_id) == "running"
                assert container_status(b.data_dir, made.sandbox_id) is None
                # Everything through B is relayed to A over HTTPS.
                via_b = on_b.connect("tls-on-a")
                assert via_b.run("sh", ["-c", "echo relayed over tls"]).stdout == "relayed over tls"
                payload = bytes(range(256)) * 4096
                via_b.write_file("/root/up.bin", payload)
                assert via_b.read_file("/root/up.bin") == payload
                proc = via_b.start_process("sh", ["-c", "for i in 1 2 3; do echo line-$i; done"])
                lines = [e.line for e in via_b.follow_output(proc.pid)]
                assert lines == ["line-1", "line-2", "line-3"], lines
                terminal_works(via_b, "tls")
                serve_file(via_b, b"over tls\n")
                tunnel_serves(via_b, b"over tls\n")
                # Lifecycle through B acts on A.
                on_b.suspend("tls-on-a")
                assert on_a.get("tls-on-a").status == "suspended"
                on_b.resume("tls-on-a")
                assert on_b.connect("tls-on-a").read_file("/root/up.bin")[:4] == bytes(range(4))

                # The CLI speaks HTTPS too, trusting SSL_CERT_FILE.
                cfg = tmp_path / "cli.json"
                out = run_cli(b.url, "node", "ls", "--json", config=cfg)
                assert out.returncode == 0, out.stderr
                assert {n["name"] for n in json.loads(out.stdout)} >= set(names)
                out = run_cli(b.url, "exec", "tls-on-a", "--", "cat", "/tmp/www/hi.txt", config=cfg)
                assert (out.returncode, out.stdout) == (0, b"over tls\n"), out.stderr
                # Without the CA it refuses the certificate.
                out = run_cli(b.url, "node", "ls", config=cfg, env={"SSL_CERT_FILE": "/dev/null"})
                assert out.returncode != 0
                assert b"certificate" in out.stderr.lower(), out.stderr
            finally:
                on_a.delete("tls-on-a")


def test_a_tls_node_never_relays_in_clear_and_checks_its_peers_certificates(pg, tmp_path, monkeypatch):
    ca = CertificateAuthority(tmp_path / "ca")
    stranger = CertificateAuthority(tmp_path / "stranger", "stranger-ca")
    # One node serves HTTPS; the other serves plain HTTP and trusts only another CA (and the
    # system's roots: the nodes start before this test's clients are told to trust `ca`).
    args = [ca.issue("mix-tls").args(ca.pem), ["--tls-ca", str(stranger.pem)]]
    with nodes_on(pg.create_database("alcove_tls_mixed"), ["mix-tls", "mix-plain"], node_args=args,
                  tls_cas=[ca.pem]) as (tls, plain):
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.pem))
        assert node_info(tls, "mix-plain")["address"].startswith("http://")
        with SandboxClient(api_url=tls.url) as on_tls, SandboxClient(api_url=plain.url) as on_plain:
            on_tls_node = on_tls.create()
            on_plain_node = on_plain.create()
            try:
                assert container_status(tls.data_dir, on_tls_node.sandbox_id) == "running"
                assert container_status(plain.data_dir, on_plain_node.sandbox_id) == "running"
                # Each node serves its own sandboxes.
                for srv, sid in ((tls, on_tls_node.sandbox_id), (plain, on_plain_node.sandbox_id)):
                    resp = srv.api("GET", f"/sandboxes/{sid}/api/v1/processes")
                    assert resp.status_code == 200, resp.text
                # The TLS node does not relay to a plain-HTTP node: the request would carry the
                # API key and the relay token in clear.
                resp = tls.api("GET", f"/sandboxes/{on_plain_node.sandbox_id}/api/v1/processes")
                assert resp.status_code == 502, resp.text
                assert resp.json()["code"] == "SANDBOX_UNREACHABLE"
                assert "relays only to nodes that advertise an https:// URL" in resp.json()["message"]
                # The plain node does not trust the TLS node's certificate: no relay either.
                resp = plain.api("GET", f"/sandboxes/{on_tls_node.sandbox_id}/api/v1/processes")
                assert resp.status_code == 502, resp.text
                assert resp.json()["code"] == "SANDBOX_UNREACHABLE"
                assert "failed the TLS check" in resp.json()["message"]
                assert "certificate" in resp.json()["message"].lower()
            finally:
                on_tls.delete(on_tls_node.sandbox_id)
                on_plain.delete(on_plain_node.sandbox_id)


def test_bad_tls_settings_are_refused_at_start(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca")
    one, other = ca.issue("one"), ca.issue("other")
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    for args, expect in [
        (["--tls-cert", str(one.cert)], "--tls-key"),
        (["--tls-key", str(one.key)], "--tls-cert"),
        (["--tls-cert", str(one.cert), "--tls-key", str(other.key)], "--tls-key"),
        (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(one.key)], "missing.pem"),
        (["--tls-cert", str(empty), "--tls-key", str(one.key)], "no PEM certificate"),
        (["--tls-ca", str(empty)], "--tls-ca"),
        ([*one.args(ca.pem), "--advertise-url", "http://127.0.0.1:1"], "speaks only HTTPS"),
        ([*one.args(ca.pem), "--public-url", "http://localhost:1"], "speaks only HTTPS"),
    ]:
        log = refused_at_start(args)
        assert expect in log, (args, log)


TS_SDK = Path(__file__).resolve().parents[2] / "sdk/typescript"

# The TypeScript SDK over HTTPS and WSS: a run and a terminal, as a user's program would.
TS_PROGRAM = """
import { SandboxClient } from %s;
const client = new SandboxClient({ apiUrl: process.argv[2] });
const sb = await client.createAndConnect();
try {
  const ran = await sb.run('sh', { args: ['-c', 'echo ts-over-tls'] });
  const pty = await sb.createPty({ command: 'bash', cols: 80, rows: 24, env: { PS1: '$ ' } });
  await pty.connect();
  await pty.readUntil('$ ', 10000);
  await pty.send('echo pty-$((40+2))\\n');
  const echoed = (await pty.readUntil('$ ', 10000)).toString().includes('pty-42');
  await pty.send('exit 0\\n');
  console.log(JSON.stringify({ stdout: ran.stdout, echoed, exit: await pty.wait(10000) }));
} finally {
  await client.delete(sb.sandboxId);
}
"""


def test_the_typescript_sdk_speaks_https_and_wss_trusting_node_extra_ca_certs(tmp_path):
    if not (TS_SDK / "dist/index.js").exists():
        subprocess.run(["npm", "run", "--silent", "build"], cwd=TS_SDK, check=True, timeout=300)
    ca = CertificateAuthority(tmp_path / "ca")
    cert = ca.issue("single")
    srv = AlcoveServer(extra_args=["--tls-cert", str(cert.cert), "--tls-key", str(cert.key)], tls_ca=ca.pem)
    srv.start()
    try:
        program = tmp_path / "tls.mjs"
        program.write_text(TS_PROGRAM % json.dumps(str(TS_SDK / "dist/index.js")))

        def node(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
            env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
            return subprocess.run(["node", str(program), srv.url], capture_output=True, text=True,
                                  env={**env, **extra}, timeout=120)

        out = node({"NODE_EXTRA_CA_CERTS": str(ca.pem)})
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got == {"stdout": "ts-over-tls", "echoed": True, "exit": 0}, got
        # Without the CA, Node refuses the certificate before anything is sent.
        out = node({})
        assert out.returncode != 0
        assert "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in out.stderr, out.stderr[-2000:]
        assert srv.live_sandboxes() == []
    finally:
        retire(srv)


def served_certificate(srv: AlcoveServer, ca: Path) -> bytes:
    """The certificate (DER) a new connection to `srv` is shown, checked against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der
    return der


def test_sighup_reloads_a_renewed_certificate_and_keeps_the_old_one_when_the_new_is_bad(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca")
    first, renewed = ca.issue("first"), ca.issue("renewed")
    live = NodeCert(cert=tmp_path / "live.pem", key=tmp_path / "live.key")
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    srv = AlcoveServer(extra_args=["--tls-cert", str(live.cert), "--tls-key", str(live.key)], tls_ca=ca.pem)
    srv.start()
    try:
        before = served_certificate(srv, ca.pem)
        assert before == ssl.PEM_cert_to_DER_cert(first.cert.read_text())
        # A renewal: new files, then SIGHUP; the server keeps running and shows the new one.
        shutil.copy(renewed.cert, live.cert)
        shutil.copy(renewed.key, live.key)
        srv.proc.send_signal(signal.SIGHUP)
        want = ssl.PEM_cert_to_DER_cert(renewed.cert.read_text())
        assert wait_for(lambda: served_certificate(srv, ca.pem) == want, 10), srv.log_tail()
        assert srv.proc.poll() is None
        assert srv.api("GET", "/healthz").status_code == 200
        # A bad renewal (the certificate without its key) is refused; the one in use stays.
        shutil.copy(first.cert, live.cert)
        srv.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "could not be reloaded" in srv.log_tail(50), 10), srv.log_tail()
        assert served_certificate(srv, ca.pem) == want
        assert srv.proc.poll() is None
    finally:
        retire(srv)
