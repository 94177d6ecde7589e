"""The SDK against the server's OpenAPI document (``docs/protocol/openapi.json``, generated from
the server's code): its wire models, enums, request bodies, defaults and port checks.

A model of :mod:`alcove.sandbox.models` matches its schema when every property the server
writes lands in a model field (under the field's wire name or an alias), every model field is a
property (or is listed in ``NOT_SENT_BY_ALCOVE``), a field the model requires is one the schema
requires, the field's type admits the property's (a timestamp where the schema has
``EpochMillis``, the mapped model where it refers to another schema, the enum's values), and a
value built from the schema validates, ``null`` included where the schema allows it. A rename
on either side fails; ``test_a_rename_on_either_side_is_reported`` shows it.
"""

from __future__ import annotations

import copy
import enum
import inspect
import json
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest
from pydantic import AliasChoices, BaseModel

from alcove.sandbox import AsyncSandboxClient, SandboxClient, models
from alcove.sandbox._config import ClientConfig
from alcove.sandbox._protocol import _lifecycle, _nodes, _pools, _processes, _validation

DOC_PATH = Path(__file__).resolve().parents[4] / "docs" / "protocol" / "openapi.json"
REGENERATE = "cargo run -q -p alcove-server --example openapi > docs/protocol/openapi.json"

# Each model the server sends, and the schema of what it sends.
MODEL_SCHEMAS: dict[type[BaseModel], str] = {
    models.GPUResources: "GpuResources",
    models.ContainerResourcesInfo: "ResourcesInfo",
    models.SandboxResourceResizeInfo: "ResourceResize",
    models.ResizeResources: "ResizeResources",
    models.NetworkPolicy: "NetworkConfig",
    models.SandboxInfo: "SandboxInfo",
    models.ArchivedSandboxInfo: "ArchivedSandboxInfo",
    models.ArchivedSandboxPage: "ListArchivedSandboxesResponse",
    models.SnapshotInfo: "SnapshotInfo",
    models.CopySandboxResponse: "CopySandboxResponse",
    models.CopiedSandbox: "CopiedSandbox",
    models.FileSystemMount: "FileSystemMount",
    models.FileSystemAttachment: "FileSystemAttachment",
    models.FileSystemInfo: "FileSystemInfo",
    models.ProcessInfo: "ProcessInfo",
    models._OutputEventWire: "OutputEvent",  # what OutputEvent.model_validate reads
    models.OutputResponse: "OutputResponse",
    models.DirectoryEntry: "FileEntry",
    models.PtySessionInfo: "CreatePtyResponse",
    models.SandboxMetrics: "SandboxMetrics",
    models.ManagedProcessInfo: "ManagedInfo",
    models.ManagedProcessExit: "ManagedExit",
    models.RestartPolicyConfig: "RestartConfig",
    models.ProcessHealthCheck: "HealthCheck",
    models.SandboxPoolInfo: "SandboxPoolInfo",
    models.PoolContainerInfo: "PoolContainerInfo",
    models.NodeInfo: "NodeInfo",
    models.NodeResources: "NodeResources",
}

# Answers the document does not describe yet (its log routes answer 501 NOT_IMPLEMENTED): their
# camelCase wire is the official SDK's, checked in test_supervision.py.
NOT_IN_THE_DOCUMENT: dict[type[BaseModel], str] = {
    models.SandboxLogSignal: "a record of GET /sandboxes/{id}/logs",
    models.SandboxLogsResponse: "GET /sandboxes/{id}/logs",
    models.SandboxProcessLogFilter: "an entry of GET /sandboxes/{id}/processes",
    models.SandboxProcessLogFiltersResponse: "GET /sandboxes/{id}/processes",
    # The image routes are not in the document yet: their models are checked against the wire
    # types of crates/wire/src/image.rs in test_images.py.
    models.ImageInfo: "GET /images/{ref}",
    models.ImageRunConfig: "the config of an ImageInfo",
    models.ImageLayerInfo: "a layer of an ImageInfo",
    models.ImageUsers: "the used_by of an ImageInfo",
    models.DeleteImageResult: "DELETE /images/{ref}",
    models.LayerProgress: "a layer of a pull's progress",
    models.ImageResolvedEvent: "an event of POST /images/pull",
    models.ImageLayerEvent: "an event of POST /images/pull",
    models.BuildStepEvent: "an event of POST /images/build",
    models.BuildOutputEvent: "an event of POST /images/build",
    models.ImageDoneEvent: "an event of POST /images/pull or /images/build",
    models.ImageErrorEvent: "an event of POST /images/pull or /images/build",
}

# Models that never travel as such.
SDK_ONLY: dict[type[BaseModel], str] = {
    models.CommandResult: "built by Sandbox.run from the events of the run stream",
}

# Fields the SDK reads from Tensorlake's servers that Alcove does not send.
NOT_SENT_BY_ALCOVE: dict[type[BaseModel], set[str]] = {
    models.SandboxInfo: {"routing_hint", "outcome", "resource_resize"},
    models.ArchivedSandboxInfo: {"routing_hint", "outcome", "resource_resize"},
    models.SnapshotInfo: {"snapshot_uri"},
    models.ProcessInfo: {"handle"},
    models.ContainerResourcesInfo: {"gpus"},
}

# Enums and the schema of their values. Answers: the SDK must know every value the server
# sends; requests: the server must accept every value the SDK sends.
ANSWER_ENUMS: dict[type[enum.Enum], str] = {
    models.SandboxStatus: "SandboxStatus",
    models.SnapshotStatus: "SnapshotStatus",
    models.SnapshotType: "SnapshotType",
    models.ProcessStatus: "ProcessStatus",
    models.ManagedProcessStatus: "ManagedStatus",
    models.ManagedProcessHealthStatus: "HealthStatus",
    models.RestartPolicy: "RestartPolicy",
    models.ProcessHealthCheckType: "HealthCheckKind",
    models.PoolContainerState: "PoolContainerState",
    models.NodeState: "NodeState",
}
REQUEST_ENUMS: dict[type[enum.Enum], str] = {
    models.SnapshotType: "SnapshotType",
    models.StdinMode: "StdinMode",
    models.OutputMode: "OutputMode",
    models.RestartPolicy: "RestartPolicy",
    models.ProcessHealthCheckType: "HealthCheckKind",
}

EPOCH_MILLIS = "EpochMillis"
SAMPLE_MILLIS = 1_795_711_162_444


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    assert DOC_PATH.is_file(), f"{DOC_PATH} is missing; generate it with: {REGENERATE}"
    return json.loads(DOC_PATH.read_text())


# ---------------------------------------------------------------------------------------------
# Reading the document


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    name = _ref_name(schema)
    return _resolve(doc, doc["components"]["schemas"][name]) if name else schema


def _is_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null"


def _nullable(schema: dict[str, Any]) -> bool:
    ty = schema.get("type")
    return (isinstance(ty, list) and "null" in ty) or any(_is_null(b) for b in schema.get("oneOf", []))


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without its ``null`` alternative."""
    branches = [b for b in schema.get("oneOf", []) if not _is_null(b)]
    return branches[0] if len(branches) == 1 and "oneOf" in schema else schema


def _type(schema: dict[str, Any]) -> str | None:
    ty = schema.get("type")
    if isinstance(ty, list):
        rest = [t for t in ty if t != "null"]
        return rest[0] if rest else None
    return ty


def sample(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A non-null value the schema admits, with every property of objects."""
    schema = _non_null(schema)
    if _ref_name(schema) == EPOCH_MILLIS:
        return SAMPLE_MILLIS
    schema = _resolve(doc, schema)
    if "oneOf" in schema:
        return sample(doc, next(b for b in schema["oneOf"] if not _is_null(b)))
    if "enum" in schema:
        return schema["enum"][0]
    ty = _type(schema)
    if ty == "string":
        return "x"
    if ty == "integer":
        return max(schema.get("minimum", 1), 1)
    if ty == "number":
        return 1.5
    if ty == "boolean":
        return True
    if ty == "array":
        return [sample(doc, schema.get("items", {}))]
    if ty == "object":
        if "properties" in schema:
            return {name: sample(doc, prop) for name, prop in schema["properties"].items()}
        return {}
    return "any"


# ---------------------------------------------------------------------------------------------
# Reading the models


def wire_names(model: type[BaseModel], field_name: str) -> list[str]:
    """The keys a field is read from: its validation aliases, else its alias, and its own name
    when the model populates by name."""
    field = model.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = [choice for choice in alias.choices if isinstance(choice, str)]
    elif isinstance(alias, str):
        names = [alias]
    else:
        names = [field.alias or field_name]
    if model.model_config.get("populate_by_name") and field_name not in names:
        names.append(field_name)
    return names


def core_types(annotation: Any) -> set[Any]:
    """The types an annotation admits: ``Annotated`` and unions unwrapped, generics reduced to
    their origin (``list[str]`` → ``list``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return core_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(core_types(arg) for arg in typing.get_args(annotation)))
    if annotation is None:
        return {type(None)}
    return {origin or annotation}


def _item_annotation(annotation: Any) -> Any:
    """The item type of the list in an annotation (``Any`` if it names no list)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _item_annotation(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        lists = [arg for arg in typing.get_args(annotation) if list in core_types(arg)]
        return _item_annotation(lists[0]) if lists else Any
    if origin is list:
        args = typing.get_args(annotation)
        return args[0] if args else Any
    return Any


def type_problems(doc: dict[str, Any], where: str, annotation: Any, prop: dict[str, Any]) -> list[str]:
    """Why a field of this annotation cannot hold what the property schema describes."""
    admitted = core_types(annotation)
    if Any in admitted:
        return []
    problems = []
    if _nullable(prop) and type(None) not in admitted:
        problems.append(f"{where}: the server may send null, the field does not admit None")
    schema = _non_null(prop)
    ref = _ref_name(schema)
    if ref == EPOCH_MILLIS:
        if datetime not in admitted:
            problems.append(f"{where}: a timestamp ({EPOCH_MILLIS}) needs a datetime field, got {annotation}")
        return problems
    target = _resolve(doc, schema)
    if "enum" in target:
        enums = [t for t in admitted if isinstance(t, type) and issubclass(t, enum.Enum)]
        if str not in admitted and not enums:
            problems.append(f"{where}: an enum of strings needs a str or enum field, got {annotation}")
        for cls in enums:
            missing = set(target["enum"]) - {member.value for member in cls}
            if missing:
                problems.append(f"{where}: {cls.__name__} lacks the values {sorted(missing)}")
        return problems
    ty = _type(target)
    if ty == "object" and "properties" in target:
        mapped = [t for t in admitted if isinstance(t, type) and issubclass(t, BaseModel)]
        if dict in admitted:
            return problems
        if not mapped:
            problems.append(f"{where}: an object ({ref}) needs a model or dict field, got {annotation}")
        for cls in mapped:
            if MODEL_SCHEMAS.get(cls) != ref:
                problems.append(f"{where}: {cls.__name__} is not the model of schema {ref}")
        return problems
    wanted: dict[str | None, tuple[type, ...]] = {
        "integer": (int, float),
        "number": (float,),
        "string": (str,),
        "boolean": (bool,),
        "array": (list,),
        "object": (dict,),
    }
    if ty in wanted and not admitted & set(wanted[ty]):
        names = " or ".join(t.__name__ for t in wanted[ty])
        problems.append(f"{where}: a JSON {ty} needs a {names} field, got {annotation}")
    if ty == "array" and list in admitted:
        problems += type_problems(doc, f"{where}[]", _item_annotation(annotation), target.get("items", {}))
    return problems


# ---------------------------------------------------------------------------------------------
# The check


def check_model(model: type[BaseModel], schema_name: str, doc: dict[str, Any]) -> list[str]:
    """Every way ``model`` does not read what schema ``schema_name`` describes."""
    schema = doc["components"]["schemas"][schema_name]
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    name = f"{model.__name__} ({schema_name})"
    not_sent = NOT_SENT_BY_ALCOVE.get(model, set())
    problems: list[str] = []
    reader: dict[str, str] = {}
    for field_name in model.model_fields:
        names = wire_names(model, field_name)
        sent = [n for n in names if n in props]
        for key in sent:
            reader[key] = field_name
        if not sent and field_name not in not_sent:
            problems.append(f"{name}: field {field_name} (read from {names}) is not a property of the schema")
        if model.model_fields[field_name].is_required() and not required & set(names):
            problems.append(f"{name}: field {field_name} is required, the schema does not require any of {names}")
    for key, prop in props.items():
        field_name = reader.get(key)
        if field_name is None:
            problems.append(f"{name}: property {key} is sent, no field reads it")
            continue
        field = model.model_fields[field_name]
        problems += type_problems(doc, f"{name}.{field_name}", field.annotation, prop)
        if "default" in prop and not field.is_required():
            default = field.get_default(call_default_factory=True)
            default = default.value if isinstance(default, enum.Enum) else default
            if default != prop["default"]:
                theirs = prop["default"]
                problems.append(f"{name}: field {field_name} defaults to {default!r}, the server to {theirs!r}")
    if problems:
        return problems
    # What the schema describes must validate, each value in its field, null where allowed.
    full = sample(doc, schema)
    try:
        parsed = model.model_validate(full)
    except pydantic.ValidationError as e:
        return [f"{name}: a value built from the schema does not validate: {e}"]
    for key in props:
        if getattr(parsed, reader[key]) is None:
            problems.append(f"{name}: property {key} did not reach field {reader[key]}")
    for key, prop in props.items():
        if _nullable(prop) or key not in required:
            partial = {k: v for k, v in full.items() if k != key}
            if _nullable(prop):
                partial[key] = None
            try:
                model.model_validate(partial)
            except pydantic.ValidationError as e:
                problems.append(f"{name}: property {key} absent or null does not validate: {e}")
    return problems


def value_problems(doc: dict[str, Any], where: str, value: Any, schema: dict[str, Any]) -> list[str]:
    """Why a request value does not fit its schema (types, enums, bounds, property names)."""
    if value is None:
        return [] if _nullable(schema) else [f"{where}: null is not allowed"]
    schema = _resolve(doc, _non_null(schema))
    if "oneOf" in schema:
        fits = [b for b in schema["oneOf"] if not value_problems(doc, where, value, b)]
        return [] if fits else [f"{where}: {value!r} fits no alternative"]
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{where}: {value!r} is not one of {schema['enum']}"]
    ty = _type(schema)
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if ty in checks and not checks[ty](value):
        return [f"{where}: {value!r} is not a JSON {ty}"]
    problems = []
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{where}: {value!r} is below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{where}: {value!r} is above {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        problems.append(f"{where}: {value!r} is not above {schema['exclusiveMinimum']}")
    if ty == "array":
        for i, item in enumerate(value):
            problems += value_problems(doc, f"{where}[{i}]", item, schema.get("items", {}))
    if ty == "object" and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                problems.append(f"{where}: {key} is not a property the server reads")
            else:
                problems += value_problems(doc, f"{where}.{key}", item, schema["properties"][key])
        missing = set(schema.get("required", [])) - set(value)
        problems += [f"{where}: the required {key} is missing" for key in sorted(missing)]
    return problems


# ---------------------------------------------------------------------------------------------
# Tests


def test_every_wire_model_is_checked() -> None:
    wire = {
        cls
        for cls in vars(models).values()
        if isinstance(cls, type) and issubclass(cls, models._WireModel) and cls is not models._WireModel
    }
    wire -= {models._CamelWireModel}
    assert wire == set(MODEL_SCHEMAS) | set(SDK_ONLY) | set(NOT_IN_THE_DOCUMENT)


@pytest.mark.parametrize("model", list(MODEL_SCHEMAS), ids=lambda m: m.__name__)
def test_model_reads_what_the_server_sends(doc: dict[str, Any], model: type[BaseModel]) -> None:
    problems = check_model(model, MODEL_SCHEMAS[model], doc)
    assert not problems, "\n".join(problems)


def test_enums_are_spelled_as_on_the_wire(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for cls, name in ANSWER_ENUMS.items():
        missing = set(schemas[name]["enum"]) - {m.value for m in cls}
        assert not missing, f"{cls.__name__} lacks the server's values {sorted(missing)}"
    for cls, name in REQUEST_ENUMS.items():
        unknown = {m.value for m in cls} - set(schemas[name]["enum"])
        assert not unknown, f"the server does not accept {cls.__name__} values {sorted(unknown)}"


def test_a_rename_on_either_side_is_reported(doc: dict[str, Any]) -> None:
    assert not check_model(models.SandboxInfo, "SandboxInfo", doc)
    # The server renames a property.
    renamed = copy.deepcopy(doc)
    schema = renamed["components"]["schemas"]["SandboxInfo"]
    schema["properties"]["name_space"] = schema["properties"].pop("namespace")
    schema["required"] = [("name_space" if k == "namespace" else k) for k in schema["required"]]
    problems = check_model(models.SandboxInfo, "SandboxInfo", renamed)
    assert any("property name_space is sent, no field reads it" in p for p in problems), problems
    assert any("field namespace" in p and "not a property" in p for p in problems), problems

    # The SDK renames a field.
    fields = {name: (f.annotation, f) for name, f in models.ProcessInfo.model_fields.items()}
    fields["stdin_open"] = fields.pop("stdin_writable")
    renamed_model = pydantic.create_model("ProcessInfo", __base__=models._WireModel, **fields)
    problems = check_model(renamed_model, "ProcessInfo", doc)
    assert any("property stdin_writable is sent, no field reads it" in p for p in problems), problems
    assert any("field stdin_open" in p for p in problems), problems

    # The SDK changes a type, or forgets that a value may be null.
    fields = {name: (f.annotation, f) for name, f in models.ProcessInfo.model_fields.items()}
    fields["pid"] = (str, fields["pid"][1])
    fields["exit_code"] = (int, pydantic.Field(default=0))
    changed_model = pydantic.create_model("ProcessInfo", __base__=models._WireModel, **fields)
    problems = check_model(changed_model, "ProcessInfo", doc)
    assert any(".pid: a JSON integer needs" in p for p in problems), problems
    assert any(".exit_code: the server may send null" in p for p in problems), problems


def test_defaults_are_the_servers(doc: dict[str, Any]) -> None:
    resources = doc["components"]["schemas"]["ResourcesRequest"]["properties"]
    cpus, memory_mb = resources["cpus"]["default"], resources["memory_mb"]["default"]
    assert _lifecycle.DEFAULT_CPUS == cpus
    assert _lifecycle.DEFAULT_MEMORY_MB == memory_mb
    for method in (
        SandboxClient.create,
        SandboxClient.create_and_connect,
        AsyncSandboxClient.create,
        AsyncSandboxClient.create_and_connect,
    ):
        params = inspect.signature(method).parameters
        assert params["cpus"].default == cpus, method.__qualname__
        assert params["memory_mb"].default == memory_mb, method.__qualname__
    per_cpu = resources["memory_mb"]["x-memory-mb-per-cpu"]
    assert per_cpu["minimum"] <= memory_mb / cpus <= per_cpu["maximum"]


def test_port_checks_are_the_servers(doc: dict[str, Any]) -> None:
    port = doc["components"]["schemas"]["CreateSandboxRequest"]["properties"]["exposed_ports"]["items"]
    low, high, reserved = port["minimum"], port["maximum"], port["x-reserved"]
    assert reserved == [_validation.MANAGEMENT_PORT]
    assert _validation.validate_ports([high, low]) == [low, high]
    for bad in (low - 1, high + 1, *reserved):
        with pytest.raises(ValueError):
            _validation.validate_ports([bad])


def test_create_body_is_a_create_request(doc: dict[str, Any]) -> None:
    schema = {"$ref": "#/components/schemas/CreateSandboxRequest"}
    body = _lifecycle.create_body(
        name="my-env",
        cpus=2.0,
        memory_mb=4096,
        timeout_secs=60,
        image="default",
        snapshot_id="snap",
        secret_names=["API_KEY"],
        expose_ports=[8080],
        allow_unauthenticated_access=True,
        disk_mb=20480,
        entrypoint=["sleep", "infinity"],
        node_selector={"zone": "b"},
    )
    assert body["node_selector"] == {"zone": "b"}
    problems = value_problems(doc, "create", body, schema)
    assert not problems, "\n".join(problems)
    defaults = _lifecycle.create_body(
        name=None,
        cpus=_lifecycle.DEFAULT_CPUS,
        memory_mb=_lifecycle.DEFAULT_MEMORY_MB,
        timeout_secs=None,
        image=None,
        snapshot_id=None,
        secret_names=None,
        expose_ports=None,
        allow_unauthenticated_access=False,
        disk_mb=None,
        entrypoint=None,
    )
    assert not value_problems(doc, "create", defaults, schema)


def test_pool_bodies_are_pool_requests(doc: dict[str, Any]) -> None:
    pool = {"$ref": "#/components/schemas/SandboxPoolRequest"}
    full = _pools.pool_body(
        image="default",
        cpus=2.0,
        memory_mb=2048,
        disk_mb=20480,
        timeout_secs=60,
        entrypoint=["sleep", "infinity"],
        max_containers=4,
        warm_containers=2,
        network=models.NetworkPolicy(allow_internet_access=False, allow_out=["10.0.0.1"], deny_out=[]),
        node_selector={"zone": "b"},
    )
    assert full["node_selector"] == {"zone": "b"}
    assert not value_problems(doc, "pool", full, pool)
    defaults = _pools.pool_body(
        image=None,
        cpus=_lifecycle.DEFAULT_CPUS,
        memory_mb=_lifecycle.DEFAULT_MEMORY_MB,
        disk_mb=None,
        timeout_secs=0,
        entrypoint=None,
        max_containers=None,
        warm_containers=None,
        network=None,
    )
    assert not value_problems(doc, "pool", defaults, pool)
    claim = _pools.claim_body(
        name="job-1", env={"A": "1"}, secret_names=["K"], network={"deny_out": ["1.1.1.1"]}, file_systems=None
    )
    assert not value_problems(doc, "claim", claim, {"$ref": "#/components/schemas/ClaimSandboxRequest"})
    props = doc["components"]["schemas"]["SandboxPoolRequest"]["properties"]
    assert props["warm_containers"]["maximum"] == _pools.MAX_WARM_CONTAINERS
    assert props["max_containers"]["maximum"] == _pools.MAX_POOL_CONTAINERS
    assert props["warm_containers"]["minimum"] == props["max_containers"]["minimum"] == 1


def test_run_body_is_a_run_request(doc: dict[str, Any]) -> None:
    body = _processes.run_body("echo", ["hi"], {"A": "1"}, "/tmp", 10.0, "root")
    problems = value_problems(doc, "run", body, {"$ref": "#/components/schemas/RunRequest"})
    assert not problems, "\n".join(problems)


def test_start_bodies_are_start_requests(doc: dict[str, Any]) -> None:
    schema = {"$ref": "#/components/schemas/StartProcessRequest"}
    plain = _processes.start_body("cat", ["-n"], {"A": "1"}, "/tmp", "pipe", "capture", "discard", "root")
    assert not value_problems(doc, "start", plain, schema)
    managed = _processes.start_body(
        "python3",
        ["-m", "http.server", "8000"],
        None,
        None,
        "closed",
        None,
        None,
        None,
        name="web",
        restart=models.RestartPolicyConfig(policy="always", max_restarts=3, initial_backoff_ms=100),
        health_check={"type": "http", "port": 8000, "path": "/", "failure_threshold": 2},
    )
    assert set(managed) >= {"name", "restart", "health_check"}
    problems = value_problems(doc, "start", managed, schema)
    assert not problems, "\n".join(problems)
    defaults = _processes.start_body("sleep", None, None, None, None, None, None, None, restart={})
    assert defaults["restart"] == {
        "policy": "on_failure",
        "initial_backoff_ms": 500,
        "max_backoff_ms": 30000,
    }
    assert not value_problems(doc, "start", defaults, schema)


def test_restart_route_is_documented(doc: dict[str, Any]) -> None:
    assert "post" in doc["paths"]["/api/v1/processes/{p}/restart"]
    for route in ("/v1/namespaces/{ns}/sandboxes/{id}/logs", "/v1/namespaces/{ns}/sandboxes/{id}/processes"):
        assert "get" in doc["paths"][route], route


def test_node_routes_are_the_servers(doc: dict[str, Any]) -> None:
    # Server-level routes: the document's paths, under the API URL itself (no namespace).
    cfg = ClientConfig(api_url="http://h", api_key=None, namespace="default", timeout_secs=5.0)
    assert "get" in doc["paths"]["/nodes"]
    assert _nodes.nodes_url(cfg) == "http://h/nodes"
    for verb in ("drain", "activate"):
        assert "post" in doc["paths"][f"/nodes/{{node}}/{verb}"], verb
        assert _nodes.nodes_url(cfg, "n", f"/{verb}") == f"http://h/nodes/n/{verb}"
    assert doc["components"]["schemas"]["NodeList"]["required"] == ["nodes"]
