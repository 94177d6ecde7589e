/**
 * The SDK against the server's OpenAPI document (`docs/protocol/openapi.json`, generated from
 * the server's code): the interfaces of `src/models.ts`, their `…FromWire` readers, the enums,
 * the request bodies, the defaults and the port checks.
 *
 * An interface matches its schema when every property the server writes has a field (its
 * camelCase, or an alias below), every field is a property (or is listed in NOT_SENT_BY_ALCOVE),
 * the field's type admits the property's (`Date` for `EpochMillis`, the mapped interface for a
 * referenced object, the enum's values), and its reader takes a value built from the schema
 * into exactly that field and accepts the schema's required properties alone, `null` where
 * allowed. The interfaces are read with the TypeScript compiler API from the source. A rename on
 * either side fails, as "a rename on either side is reported" shows.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import ts from "typescript";

import {
  claimBody,
  createBody,
  DEFAULT_CPUS,
  DEFAULT_MEMORY_MB,
  MANAGEMENT_PORT,
  MAX_POOL_CONTAINERS,
  MAX_WARM_CONTAINERS,
  poolBody,
  resizeBody,
  validatePorts,
} from "../../src/client.js";
import {
  managedProcessExitFromWire,
  managedProcessInfoFromWire,
  processHealthCheckFromWire,
  restartPolicyConfigFromWire,
  archivedSandboxInfoFromWire,
  archivedSandboxPageFromWire,
  directoryEntryFromWire,
  outputEventFromWire,
  outputResponseFromWire,
  processInfoFromWire,
  poolContainerInfoFromWire,
  ptySessionInfoFromWire,
  sandboxInfoFromWire,
  sandboxPoolInfoFromWire,
  sandboxMetricsFromWire,
  snapshotInfoFromWire,
  copySandboxResponseFromWire,
  copiedSandboxFromWire,
  fileSystemInfoFromWire,
  fileSystemMountFromWire,
  nodeInfoFromWire,
  nodeResourcesFromWire,
} from "../../src/models.js";
import { runBody, startProcessBody } from "../../src/sandbox.js";

type Json = unknown;
type Schema = Record<string, any>;
type Doc = { components: { schemas: Record<string, Schema> } };

const DOC_URL = new URL("../../../../../docs/protocol/openapi.json", import.meta.url);
const MODELS_URL = new URL("../../../src/models.ts", import.meta.url);
const REGENERATE = "cargo run -q -p alcove-server --example openapi > docs/protocol/openapi.json";

const doc = JSON.parse(readFileSync(DOC_URL, "utf8")) as Doc;
const modelsSource = readFileSync(MODELS_URL, "utf8");

/** Each interface the server sends, and the schema of what it sends. */
const INTERFACE_SCHEMAS: Record<string, string> = {
  GPUResources: "GpuResources",
  ContainerResourcesInfo: "ResourcesInfo",
  SandboxResourceResizeInfo: "ResourceResize",
  ResizeResources: "ResizeResources",
  NetworkPolicy: "NetworkConfig",
  SandboxInfo: "SandboxInfo",
  ArchivedSandboxInfo: "ArchivedSandboxInfo",
  ArchivedSandboxPage: "ListArchivedSandboxesResponse",
  SnapshotInfo: "SnapshotInfo",
  CopySandboxResponse: "CopySandboxResponse",
  CopiedSandbox: "CopiedSandbox",
  FileSystemMount: "FileSystemMount",
  FileSystemAttachment: "FileSystemAttachment",
  FileSystemInfo: "FileSystemInfo",
  ProcessInfo: "ProcessInfo",
  OutputEvent: "OutputEvent",
  OutputResponse: "OutputResponse",
  DirectoryEntry: "FileEntry",
  PtySessionInfo: "CreatePtyResponse",
  SandboxMetrics: "SandboxMetrics",
  ManagedProcessInfo: "ManagedInfo",
  ManagedProcessExit: "ManagedExit",
  RestartPolicyConfig: "RestartConfig",
  ProcessHealthCheck: "HealthCheck",
  SandboxPoolInfo: "SandboxPoolInfo",
  PoolContainerInfo: "PoolContainerInfo",
  NodeInfo: "NodeInfo",
  NodeResources: "NodeResources",
};

/** Interfaces that never travel as such (an OutputBatch is built from `output_batch` events, or from
 * grouped `output` events; the decoders' tests check both). */
const SDK_ONLY = new Set(["CommandResult", "OutputBatch"]);

/**
 * Answers the document does not describe yet (its log routes answer 501 NOT_IMPLEMENTED): their
 * camelCase wire is the official SDK's, checked in supervision.test.ts.
 */
const NOT_IN_THE_DOCUMENT = new Set([
  "SandboxLogSignal",
  "SandboxLogsResponse",
  "SandboxProcessLogFilter",
  "SandboxProcessLogFiltersResponse",
  // The image routes are not in the document yet: their interfaces are checked against the wire
  // types of crates/wire/src/image.rs in images.test.ts.
  "ImageRunConfig",
  "ImageLayerInfo",
  "ImageUsers",
  "ImageInfo",
  "DeleteImageResult",
  "LayerProgress",
  "ImageResolvedEvent",
  "ImageLayerEvent",
  "BuildStepEvent",
  "BuildOutputEvent",
  "ImageDoneEvent",
  "ImageErrorEvent",
]);

/** Fields the SDK reads from Tensorlake's servers that Alcove does not send. */
const NOT_SENT_BY_ALCOVE: Record<string, string[]> = {
  SandboxInfo: ["routingHint", "outcome"],
  ArchivedSandboxInfo: ["routingHint", "outcome"],
  SnapshotInfo: ["snapshotUri"],
  ProcessInfo: ["handle"],
  ContainerResourcesInfo: ["gpus"],
};

/** Wire names besides the snake_case of the field. */
const ALIASES: Record<string, Record<string, string[]>> = {
  SandboxInfo: { sandboxId: ["id"] },
  ArchivedSandboxInfo: { sandboxId: ["id"] },
  SnapshotInfo: { snapshotId: ["id"] },
  SandboxPoolInfo: { poolId: ["id"] },
};

/** The enum types of models.ts, and the schema of their values. */
const ENUMS: Record<string, string> = {
  SandboxStatus: "SandboxStatus",
  SnapshotStatus: "SnapshotStatus",
  ResizeStatus: "ResizeStatus",
  SnapshotType: "SnapshotType",
  ProcessStatus: "ProcessStatus",
  StdinMode: "StdinMode",
  OutputMode: "OutputMode",
  OutputStream: "OutputStream",
  RestartPolicy: "RestartPolicy",
  ProcessHealthCheckType: "HealthCheckKind",
  ManagedProcessStatus: "ManagedStatus",
  ManagedProcessHealthStatus: "HealthStatus",
  PoolContainerState: "PoolContainerState",
  NodeState: "NodeState",
};

const EPOCH_MILLIS = "EpochMillis";
const SAMPLE_MILLIS = 1795711162444;

// ---------------------------------------------------------------------------------------------
// Reading the document

function refName(schema: Schema): string | null {
  return typeof schema.$ref === "string" ? schema.$ref.split("/").pop()! : null;
}

function resolve(d: Doc, schema: Schema): Schema {
  const name = refName(schema);
  return name ? resolve(d, d.components.schemas[name]!) : schema;
}

const isNull = (schema: Schema): boolean => schema.type === "null";

function nullable(schema: Schema): boolean {
  return (Array.isArray(schema.type) && schema.type.includes("null")) || (schema.oneOf ?? []).some(isNull);
}

/** The schema without its `null` alternative. */
function nonNull(schema: Schema): Schema {
  const branches = (schema.oneOf ?? []).filter((b: Schema) => !isNull(b));
  return schema.oneOf && branches.length === 1 ? branches[0] : schema;
}

function typeOf(schema: Schema): string | undefined {
  return Array.isArray(schema.type) ? schema.type.find((t: string) => t !== "null") : schema.type;
}

/** A non-null value the schema admits, every property of objects included; `flag` is every boolean. */
function sample(d: Doc, schema: Schema, key: string, flag: boolean): Json {
  schema = nonNull(schema);
  if (refName(schema) === EPOCH_MILLIS) return SAMPLE_MILLIS;
  schema = resolve(d, schema);
  if (schema.oneOf) return sample(d, schema.oneOf.find((b: Schema) => !isNull(b)), key, flag);
  if (schema.enum) return schema.enum[0];
  switch (typeOf(schema)) {
    case "string":
      return `${key}-value`;
    case "integer":
      return Math.max(schema.minimum ?? 0, 7);
    case "number":
      return 1.5;
    case "boolean":
      return flag;
    case "array":
      return [sample(d, schema.items ?? {}, key, flag)];
    case "object":
      return Object.fromEntries(
        Object.entries(schema.properties ?? {}).map(([k, p]) => [k, sample(d, p as Schema, k, flag)]),
      );
    default:
      return "any";
  }
}

/** Only the required properties, the nullable ones as `null`. */
function minimal(d: Doc, schema: Schema): Record<string, Json> {
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  return Object.fromEntries(
    (schema.required ?? []).map((k: string) => [k, nullable(props[k]!) ? null : sample(d, props[k]!, k, true)]),
  );
}

// ---------------------------------------------------------------------------------------------
// Reading the interfaces (TypeScript compiler API)

interface Field {
  name: string;
  type: ts.TypeNode;
  optional: boolean;
}

interface Source {
  interfaces: Map<string, Field[]>;
  aliases: Map<string, ts.TypeNode>;
  file: ts.SourceFile;
}

function parseSource(text: string): Source {
  const file = ts.createSourceFile("models.ts", text, ts.ScriptTarget.ES2022, true);
  const own = new Map<string, Field[]>();
  const bases = new Map<string, string[]>();
  const aliases = new Map<string, ts.TypeNode>();
  for (const statement of file.statements) {
    if (ts.isInterfaceDeclaration(statement)) {
      const fields: Field[] = [];
      for (const member of statement.members) {
        if (ts.isPropertySignature(member) && member.type) {
          fields.push({ name: member.name.getText(file), type: member.type, optional: !!member.questionToken });
        }
      }
      own.set(statement.name.text, fields);
      const extended = (statement.heritageClauses ?? []).flatMap((clause) =>
        clause.types.map((base) => base.expression.getText(file)),
      );
      bases.set(statement.name.text, extended);
    } else if (ts.isTypeAliasDeclaration(statement)) {
      aliases.set(statement.name.text, statement.type);
    }
  }
  // An interface that extends others has their fields too (`ArchivedSandboxInfo extends SandboxInfo`).
  const withBases = (name: string): Field[] => [
    ...(bases.get(name) ?? []).flatMap((base) => withBases(base)),
    ...(own.get(name) ?? []),
  ];
  const interfaces = new Map([...own.keys()].map((name) => [name, withBases(name)] as [string, Field[]]));
  return { interfaces, aliases, file };
}

/** What a type admits: kinds (`string`, `null`, `Date`, …), interfaces, string literals, arrays. */
interface Admits {
  kinds: Set<string>;
  interfaces: Set<string>;
  literals: Set<string>;
  elements: ts.TypeNode[];
}

function admits(src: Source, node: ts.TypeNode, into: Admits = emptyAdmits()): Admits {
  if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) {
    for (const member of node.types) admits(src, member, into);
  } else if (ts.isParenthesizedTypeNode(node)) {
    admits(src, node.type, into);
  } else if (ts.isTypeOperatorNode(node) && node.operator === ts.SyntaxKind.ReadonlyKeyword) {
    admits(src, node.type, into); // `readonly T[]` admits what `T[]` does
  } else if (ts.isArrayTypeNode(node)) {
    into.kinds.add("array");
    into.elements.push(node.elementType);
  } else if (ts.isLiteralTypeNode(node)) {
    if (node.literal.kind === ts.SyntaxKind.NullKeyword) into.kinds.add("null");
    else if (ts.isStringLiteral(node.literal)) into.literals.add(node.literal.text);
  } else if (ts.isTypeReferenceNode(node)) {
    const name = node.typeName.getText(src.file);
    if (name === "Open") {
      // Open<T>: the known values, plus any string.
      into.kinds.add("string");
      for (const arg of node.typeArguments ?? []) admits(src, arg, into);
    } else if (src.aliases.has(name)) {
      admits(src, src.aliases.get(name)!, into);
    } else if (src.interfaces.has(name)) {
      into.interfaces.add(name);
    } else {
      into.kinds.add(name);
    }
  } else if (node.kind === ts.SyntaxKind.StringKeyword) into.kinds.add("string");
  else if (node.kind === ts.SyntaxKind.NumberKeyword) into.kinds.add("number");
  else if (node.kind === ts.SyntaxKind.BooleanKeyword) into.kinds.add("boolean");
  else if (node.kind === ts.SyntaxKind.UnknownKeyword || node.kind === ts.SyntaxKind.AnyKeyword) {
    into.kinds.add("unknown");
  }
  else if (ts.isTypeLiteralNode(node)) into.kinds.add("object");
  return into;
}

function emptyAdmits(): Admits {
  return { kinds: new Set(), interfaces: new Set(), literals: new Set(), elements: [] };
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function wireNames(iface: string, field: string): string[] {
  return [snake(field), ...(ALIASES[iface]?.[field] ?? [])];
}

function typeProblems(d: Doc, src: Source, where: string, node: ts.TypeNode, prop: Schema): string[] {
  const got = admits(src, node);
  if (got.kinds.has("unknown")) return [];
  const problems: string[] = [];
  const text = node.getText(src.file);
  if (nullable(prop) && !got.kinds.has("null")) {
    problems.push(`${where}: the server may send null, the type ${text} has none`);
  }
  const schema = nonNull(prop);
  const ref = refName(schema);
  if (ref === EPOCH_MILLIS) {
    if (!got.kinds.has("Date")) problems.push(`${where}: a timestamp (${EPOCH_MILLIS}) needs a Date, got ${text}`);
    return problems;
  }
  const target = resolve(d, schema);
  if (target.enum) {
    if (!got.kinds.has("string") && got.literals.size === 0) {
      problems.push(`${where}: an enum needs strings, got ${text}`);
    }
    const missing = (target.enum as string[]).filter((v) => got.literals.size > 0 && !got.literals.has(v));
    if (missing.length) problems.push(`${where}: ${text} lacks the values ${missing.join(", ")}`);
    return problems;
  }
  const ty = typeOf(target);
  if (ty === "object" && target.properties) {
    if (got.kinds.has("object")) return problems;
    if (got.interfaces.size === 0) problems.push(`${where}: an object (${ref}) needs an interface, got ${text}`);
    for (const iface of got.interfaces) {
      if (INTERFACE_SCHEMAS[iface] !== ref) problems.push(`${where}: ${iface} is not the interface of schema ${ref}`);
    }
    return problems;
  }
  const wanted: Record<string, string> = {
    integer: "number",
    number: "number",
    string: "string",
    boolean: "boolean",
    array: "array",
  };
  if (ty && wanted[ty] && !got.kinds.has(wanted[ty]!)) {
    problems.push(`${where}: a JSON ${ty} needs a ${wanted[ty]}, got ${text}`);
  }
  if (ty === "array") {
    for (const element of got.elements) {
      problems.push(...typeProblems(d, src, `${where}[]`, element, target.items ?? {}));
    }
  }
  return problems;
}

/** Every way interface `iface` of `src` does not describe what schema `schemaName` of `d` says. */
function checkInterface(d: Doc, src: Source, iface: string, schemaName: string): string[] {
  const schema = d.components.schemas[schemaName]!;
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const fields = src.interfaces.get(iface) ?? [];
  const notSent = new Set(NOT_SENT_BY_ALCOVE[iface] ?? []);
  const name = `${iface} (${schemaName})`;
  const problems: string[] = [];
  const reader = new Map<string, Field>();
  for (const field of fields) {
    const names = wireNames(iface, field.name);
    const sent = names.filter((n) => n in props);
    for (const key of sent) reader.set(key, field);
    if (!sent.length && !notSent.has(field.name)) {
      problems.push(`${name}: field ${field.name} (read from ${names.join(", ")}) is not a property of the schema`);
    }
  }
  for (const [key, prop] of Object.entries(props)) {
    const field = reader.get(key);
    if (!field) {
      problems.push(`${name}: property ${key} is sent, no field reads it`);
      continue;
    }
    problems.push(...typeProblems(d, src, `${name}.${field.name}`, field.type, prop));
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Reading values: the readers of models.ts

type Reader = (value: unknown) => unknown;

const sandboxSample = sample(doc, doc.components.schemas.SandboxInfo!, "", true) as Record<string, Json>;

const READERS: Record<string, Reader> = {
  SandboxInfo: (v) => sandboxInfoFromWire(v),
  ArchivedSandboxInfo: (v) => archivedSandboxInfoFromWire(v),
  ArchivedSandboxPage: (v) => archivedSandboxPageFromWire(v),
  SnapshotInfo: (v) => snapshotInfoFromWire(v),
  CopySandboxResponse: (v) => copySandboxResponseFromWire(v),
  CopiedSandbox: (v) => copiedSandboxFromWire(v),
  FileSystemMount: (v) => fileSystemMountFromWire(v),
  FileSystemInfo: (v) => fileSystemInfoFromWire(v),
  ProcessInfo: (v) => processInfoFromWire(v),
  OutputEvent: (v) => outputEventFromWire(v),
  OutputResponse: (v) => outputResponseFromWire(v),
  DirectoryEntry: (v) => directoryEntryFromWire(v),
  PtySessionInfo: (v) => ptySessionInfoFromWire(v),
  SandboxMetrics: (v) => sandboxMetricsFromWire(v),
  ManagedProcessInfo: (v) => managedProcessInfoFromWire(v),
  ManagedProcessExit: (v) => managedProcessExitFromWire(v),
  RestartPolicyConfig: (v) => restartPolicyConfigFromWire(v),
  ProcessHealthCheck: (v) => processHealthCheckFromWire(v),
  SandboxPoolInfo: (v) => sandboxPoolInfoFromWire(v),
  PoolContainerInfo: (v) => poolContainerInfoFromWire(v),
  NodeInfo: (v) => nodeInfoFromWire(v),
  NodeResources: (v) => nodeResourcesFromWire(v),
  // No reader of their own: read as parts of a sandbox.
  ContainerResourcesInfo: (v) => sandboxInfoFromWire({ ...sandboxSample, resources: v }).resources,
  NetworkPolicy: (v) => sandboxInfoFromWire({ ...sandboxSample, network_policy: v }).networkPolicy,
  SandboxResourceResizeInfo: (v) => sandboxInfoFromWire({ ...sandboxSample, resource_resize: v }).resourceResize,
  ResizeResources: (v) =>
    sandboxInfoFromWire({ ...sandboxSample, resource_resize: { generation: 1, status: "pending", requested: v } })
      .resourceResize?.requested,
};

/** Whether `got`, read from `sent`, holds what was sent. */
function holds(got: unknown, sent: Json): boolean {
  if (sent === SAMPLE_MILLIS && got instanceof Date) return got.getTime() === SAMPLE_MILLIS;
  if (Array.isArray(sent)) return Array.isArray(got) && got.length === sent.length;
  if (typeof sent === "object" && sent !== null) return typeof got === "object" && got !== null;
  return got === sent;
}

/** Every way `read` does not take what schema `schemaName` describes into interface `iface`. */
function checkReader(d: Doc, iface: string, schemaName: string, read: Reader): string[] {
  const schema = d.components.schemas[schemaName]!;
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const name = `${iface} reader (${schemaName})`;
  const problems: string[] = [];
  const fields = new Map<string, string>();
  const optional = new Set<string>();
  for (const field of parseSource(modelsSource).interfaces.get(iface) ?? []) {
    if (field.optional) optional.add(field.name);
    for (const key of wireNames(iface, field.name)) {
      if (key in props) fields.set(key, field.name);
    }
  }
  for (const flag of [true, false]) {
    const sent = sample(d, schema, "", flag) as Record<string, Json>;
    let got: Record<string, unknown>;
    try {
      got = read(sent) as Record<string, unknown>;
    } catch (err) {
      return [`${name}: a value built from the schema is refused: ${String(err)}`];
    }
    for (const [key, field] of fields) {
      // An optional flag is left out when false (`OutputEvent.continued`: ordinary lines keep three fields).
      if (sent[key] === false && optional.has(field) && got !== null && !(field in got)) continue;
      if (!holds(got?.[field], sent[key])) {
        const [was, is] = [JSON.stringify(sent[key]), JSON.stringify(got?.[field])];
        problems.push(`${name}: ${key} = ${was} did not reach ${field} (got ${is})`);
      }
    }
  }
  try {
    read(minimal(d, schema));
  } catch (err) {
    problems.push(`${name}: the schema's required properties alone are refused: ${String(err)}`);
  }
  return [...new Set(problems)];
}

/** Why a request value does not fit its schema (types, enums, bounds, property names). */
function valueProblems(d: Doc, where: string, value: unknown, schema: Schema): string[] {
  if (value === null) return nullable(schema) ? [] : [`${where}: null is not allowed`];
  schema = resolve(d, nonNull(schema));
  if (schema.oneOf) {
    const fits = schema.oneOf.some((b: Schema) => valueProblems(d, where, value, b).length === 0);
    return fits ? [] : [`${where}: fits no alternative`];
  }
  if (schema.enum) {
    return schema.enum.includes(value) ? [] : [`${where}: ${JSON.stringify(value)} is not one of ${schema.enum}`];
  }
  const ty = typeOf(schema);
  const fits: Record<string, (v: unknown) => boolean> = {
    integer: (v) => Number.isInteger(v),
    number: (v) => typeof v === "number",
    string: (v) => typeof v === "string",
    boolean: (v) => typeof v === "boolean",
    array: (v) => Array.isArray(v),
    object: (v) => typeof v === "object" && !Array.isArray(v),
  };
  if (ty && fits[ty] && !fits[ty]!(value)) return [`${where}: ${JSON.stringify(value)} is not a JSON ${ty}`];
  const problems: string[] = [];
  const n = value as number;
  if (schema.minimum !== undefined && n < schema.minimum) problems.push(`${where}: ${n} is below ${schema.minimum}`);
  if (schema.maximum !== undefined && n > schema.maximum) problems.push(`${where}: ${n} is above ${schema.maximum}`);
  if (schema.exclusiveMinimum !== undefined && n <= schema.exclusiveMinimum) {
    problems.push(`${where}: ${n} is not above ${schema.exclusiveMinimum}`);
  }
  if (ty === "array") {
    (value as unknown[]).forEach((v, i) => problems.push(...valueProblems(d, `${where}[${i}]`, v, schema.items ?? {})));
  }
  if (ty === "object" && schema.properties) {
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      if (!(key in schema.properties)) problems.push(`${where}: ${key} is not a property the server reads`);
      else problems.push(...valueProblems(d, `${where}.${key}`, v, schema.properties[key]));
    }
    for (const key of schema.required ?? []) {
      if (!(key in (value as object))) problems.push(`${where}: the required ${key} is missing`);
    }
  }
  return problems;
}

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

// ---------------------------------------------------------------------------------------------
// Tests

describe(`models.ts against docs/protocol/openapi.json (regenerate: ${REGENERATE})`, () => {
  const src = parseSource(modelsSource);

  it("checks every interface of models.ts", () => {
    const all = [...src.interfaces.keys()].sort();
    assert.deepEqual(all, [...Object.keys(INTERFACE_SCHEMAS), ...SDK_ONLY, ...NOT_IN_THE_DOCUMENT].sort());
  });

  for (const [iface, schemaName] of Object.entries(INTERFACE_SCHEMAS)) {
    it(`${iface} has the fields and types of ${schemaName}`, () => {
      const problems = checkInterface(doc, src, iface, schemaName);
      assert.deepEqual(problems, []);
    });
    const read = READERS[iface];
    if (read) {
      it(`${iface}'s reader takes every property of ${schemaName} into its field`, () => {
        assert.deepEqual(checkReader(doc, iface, schemaName, read), []);
      });
    }
  }

  it("spells every enum as the server does", () => {
    for (const [alias, schemaName] of Object.entries(ENUMS)) {
      const node = src.aliases.get(alias);
      assert.ok(node, `no type ${alias} in models.ts`);
      const literals = admits(src, node).literals;
      const values = doc.components.schemas[schemaName]!.enum as string[];
      assert.deepEqual(values.filter((v) => !literals.has(v)), [], `${alias} lacks values of ${schemaName}`);
    }
  });

  it("a rename on either side is reported", () => {
    assert.deepEqual(checkInterface(doc, src, "SandboxInfo", "SandboxInfo"), []);
    // The server renames a property.
    const renamedDoc = structuredClone(doc);
    const props = renamedDoc.components.schemas.SandboxInfo!.properties;
    props.name_space = props.namespace;
    delete props.namespace;
    const fromDoc = checkInterface(renamedDoc, src, "SandboxInfo", "SandboxInfo");
    assert.ok(fromDoc.some((p) => p.includes("property name_space is sent, no field reads it")), fromDoc.join("\n"));
    assert.ok(fromDoc.some((p) => p.includes("field namespace") && p.includes("not a property")), fromDoc.join("\n"));
    // The SDK renames a field of an interface.
    const renamedSrc = parseSource(modelsSource.replace("  memoryMb: number;", "  memMb: number;"));
    const fromSrc = checkInterface(doc, renamedSrc, "ContainerResourcesInfo", "ResourcesInfo");
    assert.ok(fromSrc.some((p) => p.includes("property memory_mb is sent, no field reads it")), fromSrc.join("\n"));
    assert.ok(fromSrc.some((p) => p.includes("field memMb")), fromSrc.join("\n"));
    // The SDK changes a type.
    const retyped = parseSource(modelsSource.replace("  isDir: boolean;", "  isDir: string;"));
    const fromType = checkInterface(doc, retyped, "DirectoryEntry", "FileEntry");
    assert.ok(fromType.some((p) => p.includes(".isDir: a JSON boolean needs a boolean")), fromType.join("\n"));
    // A reader reads a misspelled key (and so falls back to its default).
    const misread: Reader = (v) => ({ ...processInfoFromWire(v), stdinWritable: false });
    const fromReader = checkReader(doc, "ProcessInfo", "ProcessInfo", misread);
    const misreadKey = "stdin_writable = true did not reach stdinWritable";
    assert.ok(fromReader.some((p) => p.includes(misreadKey)), fromReader.join("\n"));
  });
});

describe("request bodies, defaults and limits against docs/protocol/openapi.json", () => {
  const resources = doc.components.schemas.ResourcesRequest!.properties;

  it("uses the server's default resources", () => {
    assert.equal(DEFAULT_CPUS, resources.cpus.default);
    assert.equal(DEFAULT_MEMORY_MB, resources.memory_mb.default);
    const perCpu = resources.memory_mb["x-memory-mb-per-cpu"];
    const ratio = DEFAULT_MEMORY_MB / DEFAULT_CPUS;
    assert.ok(perCpu.minimum <= ratio && ratio <= perCpu.maximum);
  });

  it("checks ports as the server does", () => {
    const port = doc.components.schemas.CreateSandboxRequest!.properties.exposed_ports.items;
    assert.deepEqual(port["x-reserved"], [MANAGEMENT_PORT]);
    assert.deepEqual(validatePorts([port.maximum, port.minimum]), [port.minimum, port.maximum]);
    for (const bad of [port.minimum - 1, port.maximum + 1, MANAGEMENT_PORT]) {
      assert.throws(() => validatePorts([bad]), RangeError, String(bad));
    }
  });

  it("sends create bodies the server reads", () => {
    const full = createBody({
      name: "my-env",
      cpus: 2,
      memoryMb: 4096,
      timeoutSecs: 60,
      image: "default",
      snapshotId: "snap",
      secretNames: ["API_KEY"],
      exposePorts: [8080],
      allowUnauthenticatedAccess: true,
      diskMb: 20480,
      entrypoint: ["sleep", "infinity"],
      nodeSelector: { zone: "b" },
    });
    assert.deepEqual(valueProblems(doc, "create", full, ref("CreateSandboxRequest")), []);
    assert.deepEqual(valueProblems(doc, "create", createBody(), ref("CreateSandboxRequest")), []);
  });

  it("sends pool and claim bodies the server reads, within its limits", () => {
    const full = poolBody({
      image: "default",
      cpus: 2,
      memoryMb: 2048,
      diskMb: 20480,
      timeoutSecs: 60,
      entrypoint: ["sleep", "infinity"],
      maxContainers: 4,
      warmContainers: 2,
      network: { allowInternetAccess: false, allowOut: ["10.0.0.1"], denyOut: [] },
      nodeSelector: { zone: "b" },
    });
    assert.deepEqual(full.node_selector, { zone: "b" });
    assert.deepEqual(valueProblems(doc, "pool", full, ref("SandboxPoolRequest")), []);
    assert.deepEqual(valueProblems(doc, "pool", poolBody(), ref("SandboxPoolRequest")), []);
    const claim = claimBody({ name: "job-1", env: { A: "1" }, secretNames: ["K"], network: { denyOut: ["1.1.1.1"] } });
    assert.deepEqual(valueProblems(doc, "claim", claim, ref("ClaimSandboxRequest")), []);
    const props = doc.components.schemas.SandboxPoolRequest!.properties;
    assert.equal(props.warm_containers.maximum, MAX_WARM_CONTAINERS);
    assert.equal(props.max_containers.maximum, MAX_POOL_CONTAINERS);
    assert.equal(props.warm_containers.minimum, 1);
    assert.equal(props.max_containers.minimum, 1);
  });

  it("sends resize bodies the server reads", () => {
    const full = { resources: resizeBody({ cpus: 2, memoryMb: 2048, diskMb: 20480 }) };
    assert.deepEqual(valueProblems(doc, "update", full, ref("UpdateSandboxRequest")), []);
    const one = { resources: resizeBody({ memoryMb: 4096 }) };
    assert.deepEqual(valueProblems(doc, "update", one, ref("UpdateSandboxRequest")), []);
  });

  it("sends run and start bodies the server reads", () => {
    const options = { args: ["hi"], env: { A: "1" }, workingDir: "/tmp", user: "root" };
    const run = runBody("echo", { ...options, timeoutSecs: 10 });
    assert.deepEqual(valueProblems(doc, "run", run, ref("RunRequest")), []);
    const modes = { stdinMode: "pipe", stdoutMode: "capture", stderrMode: "discard" } as const;
    const start = startProcessBody("cat", { ...options, ...modes });
    assert.deepEqual(valueProblems(doc, "start", start, ref("StartProcessRequest")), []);
    const defaults = startProcessBody("cat");
    assert.equal(defaults.stdin_mode, "pipe");
    assert.deepEqual(valueProblems(doc, "start", defaults, ref("StartProcessRequest")), []);
  });

  it("sends managed start bodies the server reads", () => {
    const managed = startProcessBody("python3", {
      args: ["-m", "http.server", "8000"],
      name: "web",
      restart: { policy: "always", maxRestarts: 3, initialBackoffMs: 100 },
      healthCheck: { type: "http", port: 8000, path: "/", failureThreshold: 2 },
    });
    assert.deepEqual(Object.keys(managed).filter((k) => ["name", "restart", "health_check"].includes(k)).sort(), [
      "health_check",
      "name",
      "restart",
    ]);
    assert.deepEqual(valueProblems(doc, "start", managed, ref("StartProcessRequest")), []);
    const defaults = startProcessBody("sleep", { restart: {} });
    assert.deepEqual(defaults.restart, { policy: "on_failure", initial_backoff_ms: 500, max_backoff_ms: 30000 });
    assert.deepEqual(valueProblems(doc, "start", defaults, ref("StartProcessRequest")), []);
  });
});
