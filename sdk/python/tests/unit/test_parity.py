"""The sync and async classes expose the same public methods with the same parameters."""

from __future__ import annotations

import inspect

import pytest

from alcove.sandbox import (
    AsyncDesktop,
    AsyncPtySession,
    AsyncSandbox,
    AsyncSandboxClient,
    AsyncTunnel,
    Desktop,
    PtySession,
    Sandbox,
    SandboxClient,
    Tunnel,
)

PAIRS = [
    (SandboxClient, AsyncSandboxClient),
    (Sandbox, AsyncSandbox),
    (PtySession, AsyncPtySession),
    (Tunnel, AsyncTunnel),
    (Desktop, AsyncDesktop),
]

# Async methods that are not coroutine functions: async iterators and the awaitable context.
ASYNC_ITERATORS = {
    "follow_output",
    "follow_output_batches",
    "follow_stdout",
    "follow_stderr",
    "read_file_stream",
    "iter_logs",
}
NOT_COROUTINES = ASYNC_ITERATORS | {"create_and_connect", "claim_and_connect"}


def public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


def parameters(function: object) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_same_public_names(sync_cls: type, async_cls: type) -> None:
    assert sorted(public_methods(sync_cls)) == sorted(public_methods(async_cls))


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_same_parameters(sync_cls: type, async_cls: type) -> None:
    sync_members, async_members = public_methods(sync_cls), public_methods(async_cls)
    for name, member in sync_members.items():
        if isinstance(member, property):
            assert isinstance(async_members[name], property), name
            continue
        assert parameters(member) == parameters(async_members[name]), name
    assert parameters(sync_cls.__init__)[1:] == parameters(async_cls.__init__)[1:]


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_async_methods_are_awaitable(sync_cls: type, async_cls: type) -> None:
    for name, member in public_methods(async_cls).items():
        if isinstance(member, property):
            continue
        if name in ASYNC_ITERATORS:
            assert inspect.isasyncgenfunction(member) or not inspect.iscoroutinefunction(member), name
        elif name not in NOT_COROUTINES:
            assert inspect.iscoroutinefunction(member), name
        assert not inspect.iscoroutinefunction(getattr(sync_cls, name)), name


def test_context_managers() -> None:
    for cls in (SandboxClient, Sandbox, PtySession, Tunnel, Desktop):
        assert hasattr(cls, "__enter__") and hasattr(cls, "__exit__")
    for cls in (AsyncSandboxClient, AsyncSandbox, AsyncPtySession, AsyncTunnel, AsyncDesktop):
        assert inspect.iscoroutinefunction(cls.__aenter__) and inspect.iscoroutinefunction(cls.__aexit__)


def test_the_documented_surface_is_present() -> None:
    client_methods = {
        "create",
        "create_and_connect",
        "connect",
        "list",
        "get",
        "delete",
        "update_sandbox",
        "suspend",
        "resume",
        "snapshot_and_wait",
        "list_snapshots",
        "get_snapshot",
        "delete_snapshot",
        "expose_ports",
        "unexpose_ports",
        "get_logs",
        "iter_logs",
        "list_log_processes",
        "list_images",
        "get_image",
        "delete_image",
        "pull_image",
        "import_image",
        "build_image",
        "build_image_from_dockerfile",
        "save_snapshot_as_image",
        "create_pool",
        "get_pool",
        "list_pools",
        "update_pool",
        "delete_pool",
        "claim",
        "claim_and_connect",
        "create_file_system",
        "list_file_systems",
        "get_file_system",
        "delete_file_system",
        "attach_file_system",
        "detach_file_system",
        "list_nodes",
        "drain_node",
        "activate_node",
    }
    sandbox_methods = {
        "sandbox_id",
        "name",
        "info",
        "run",
        "start_process",
        "restart_process",
        "list_processes",
        "get_process",
        "kill_process",
        "send_signal",
        "write_stdin",
        "close_stdin",
        "get_stdout",
        "get_stderr",
        "get_output",
        "follow_output",
        "follow_stdout",
        "follow_stderr",
        "write_file",
        "read_file",
        "read_file_stream",
        "download_file",
        "list_directory",
        "delete_file",
        "terminate",
        "create_pty",
        "connect_pty",
        "create_tunnel",
        "connect_desktop",
        "get_logs",
        "iter_logs",
        "list_log_processes",
    }
    pty_methods = {
        "session_id",
        "token",
        "websocket_url",
        "exit_code",
        "connected",
        "connect",
        "send",
        "resize",
        "read",
        "read_until",
        "wait",
        "close",
        "kill",
    }
    tunnel_methods = {"remote_port", "local_host", "local_port", "local_address", "websocket_url", "closed", "close"}
    # The official SDK's Desktop, name for name.
    desktop_methods = {
        "width",
        "height",
        "close",
        "screenshot",
        "move_mouse",
        "mouse_press",
        "mouse_release",
        "click",
        "double_click",
        "left_click",
        "middle_click",
        "right_click",
        "scroll",
        "scroll_up",
        "scroll_down",
        "key_down",
        "key_up",
        "press",
        "type_text",
    }
    assert desktop_methods == set(public_methods(Desktop))
    assert pty_methods == set(public_methods(PtySession))
    assert tunnel_methods == set(public_methods(Tunnel))
    assert client_methods <= set(public_methods(SandboxClient))
    assert sandbox_methods <= set(public_methods(Sandbox))
    create = inspect.signature(SandboxClient.create).parameters
    assert [(n, create[n].default) for n in create][1:] == [
        ("name", None),
        ("cpus", 1.0),
        ("memory_mb", 1024),
        ("timeout_secs", None),
        ("image", None),
        ("snapshot_id", None),
        ("secret_names", None),
        ("expose_ports", None),
        ("allow_unauthenticated_access", False),
        ("disk_mb", None),
        ("entrypoint", None),
        ("pull_image", False),
        ("file_systems", None),
        ("node_selector", None),
    ]
    pool_parameters = [
        ("image", None),
        ("cpus", 1.0),
        ("memory_mb", 1024),
        ("disk_mb", None),
        ("timeout_secs", 0),
        ("entrypoint", None),
        ("max_containers", None),
        ("warm_containers", None),
        ("network", None),
        ("node_selector", None),
    ]
    create_pool = inspect.signature(SandboxClient.create_pool).parameters
    assert [(n, create_pool[n].default) for n in create_pool][1:] == pool_parameters
    update_pool = inspect.signature(SandboxClient.update_pool).parameters
    assert [(n, update_pool[n].default) for n in update_pool][1:] == [
        ("pool_id", inspect.Parameter.empty),
        *pool_parameters,
    ]
    for method in (SandboxClient.claim, SandboxClient.claim_and_connect):
        claim = inspect.signature(method).parameters
        assert [(n, claim[n].default, claim[n].kind) for n in claim][2:] == [
            (name, None, inspect.Parameter.KEYWORD_ONLY)
            for name in ("name", "env", "secret_names", "network", "file_systems")
        ]
    create_pty = inspect.signature(Sandbox.create_pty).parameters
    assert [(n, create_pty[n].default) for n in create_pty][1:] == [
        ("command", "bash"),
        ("args", None),
        ("env", None),
        ("working_dir", None),
        ("rows", 24),
        ("cols", 80),
    ]
    connect_desktop = inspect.signature(Sandbox.connect_desktop).parameters
    assert [(n, connect_desktop[n].default) for n in connect_desktop][1:] == [
        ("port", 5901),
        ("password", None),
        ("shared", True),
        ("connect_timeout", 10.0),
    ]
    defaults = {
        name: [(p.name, p.default) for p in inspect.signature(getattr(Desktop, name)).parameters.values()][1:]
        for name in desktop_methods - {"width", "height"}
    }
    assert defaults["screenshot"] == [("timeout", 5.0)]
    assert defaults["mouse_press"] == defaults["mouse_release"] == [("button", "left"), ("x", None), ("y", None)]
    assert defaults["click"] == [("x", None), ("y", None), ("button", "left")]
    assert defaults["double_click"] == [("x", None), ("y", None), ("button", "left"), ("delay_ms", 50)]
    assert defaults["scroll"] == [("steps", inspect.Parameter.empty), ("x", None), ("y", None)]
    assert defaults["scroll_up"] == defaults["scroll_down"] == [("steps", 1), ("x", None), ("y", None)]
    assert defaults["press"] == defaults["key_down"] == [("key", inspect.Parameter.empty)] == defaults["key_up"]
    # The official SDK's names and defaults for supervision and logs.
    start = inspect.signature(Sandbox.start_process).parameters
    assert [(n, start[n].default) for n in start][-3:] == [("name", None), ("restart", None), ("health_check", None)]
    log_filters = [("levels", None), ("process_ids", None), ("next_token", None), ("head", None), ("tail", None)]
    get_logs = inspect.signature(Sandbox.get_logs).parameters
    assert [(n, get_logs[n].default) for n in get_logs][1:] == [*log_filters, ("body", None)]
    client_get_logs = inspect.signature(SandboxClient.get_logs).parameters
    assert [(n, client_get_logs[n].default) for n in client_get_logs][1:] == [
        ("sandbox_id", inspect.Parameter.empty),
        *log_filters,
        ("body", None),
    ]
    assert list(inspect.signature(Sandbox.restart_process).parameters) == ["self", "process"]
    create_tunnel = inspect.signature(Sandbox.create_tunnel).parameters
    assert [(n, create_tunnel[n].default) for n in create_tunnel][1:] == [
        ("remote_port", inspect.Parameter.empty),
        ("local_port", None),
        ("local_host", "127.0.0.1"),
    ]
