// Validates ServiceMonitor and PrometheusRule objects with the npm package
// @kubernetes-models/prometheus-operator (validators generated from the operator's API types).
// scripts/check-kubernetes.sh installs this package (package.json, package-lock.json) into
// target/kubernetes-validate-npm/ and runs this file from there, through
// scripts/validate-kubernetes.py.
//
// stdin: a JSON array of [where, object] pairs (where: a name for messages, e.g.
// "base.yaml: ServiceMonitor/incident-manager"); other kinds are ignored.
// stdout: "  ok   WHERE: ..." or "  FAIL WHERE: PATH: MESSAGE" lines; exit 1 on any failure.
//
// Two checks per object:
//  1. the package's validate(): types, required fields, enums, patterns (durations...);
//  2. no field the package's TypeScript typings do not know. The validators accept unknown
//     fields, as the CRD schemas do; the API server refuses them under strict field
//     validation (kubectl apply's default) and drops them silently for a client that does not
//     ask for it (a misspelt `intervall` just vanishes). This check refuses them, as
//     scripts/validate-kubernetes.py does for the core kinds.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const MODELS = { ServiceMonitor, PrometheusRule };
const API_VERSION = "monitoring.coreos.com/v1";
const typingsDir = join(dirname(fileURLToPath(import.meta.url)),
  "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");

// The interface I<Kind> each <Kind>.d.ts exports, resolved by the TypeScript checker.
let checker;
const rootTypes = {};
function rootType(kind) {
  if (!checker) {
    const files = Object.keys(MODELS).map((k) => join(typingsDir, `${k}.d.ts`));
    const program = ts.createProgram(files, {
      noEmit: true, types: [], skipLibCheck: true,
      module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    checker = program.getTypeChecker();
    for (const k of Object.keys(MODELS)) {
      const source = program.getSourceFile(join(typingsDir, `${k}.d.ts`));
      const exported = source && checker.getExportsOfModule(checker.getSymbolAtLocation(source));
      const symbol = exported?.find((s) => s.name === `I${k}`);
      if (!symbol) throw new Error(`the typings have no interface I${k} in ${k}.d.ts`);
      rootTypes[k] = checker.getDeclaredTypeOfSymbol(symbol);
    }
  }
  return rootTypes[kind];
}

// Fields of `value` that `type` does not declare. Values whose type is not an object shape
// the typings spell out (any, {}, a primitive: a type error the validator reports) are not
// looked into.
function unknownFields(value, type, path, found) {
  if (value === null || typeof value !== "object") return;
  type = checker.getNonNullableType(type);
  const types = type.isUnion() ? type.types : [type];
  if (Array.isArray(value)) {
    const items = types.map((t) => checker.getIndexTypeOfType(t, ts.IndexKind.Number)).filter(Boolean);
    if (items.length === 1) value.forEach((item, i) => unknownFields(item, items[0], `${path}/${i}`, found));
    return;
  }
  const shapes = types.filter((t) => (t.flags & ts.TypeFlags.Object) && !checker.isArrayType(t)
    && (checker.getPropertiesOfType(t).length > 0 || checker.getIndexTypeOfType(t, ts.IndexKind.String)));
  if (shapes.length !== 1) return;
  const [shape] = shapes;
  for (const [key, child] of Object.entries(value)) {
    const property = checker.getPropertyOfType(shape, key);
    const childType = property ? checker.getTypeOfSymbol(property) : checker.getIndexTypeOfType(shape, ts.IndexKind.String);
    if (childType) unknownFields(child, childType, `${path}/${key}`, found);
    else found.push(`${path}/${key}: unknown field (not in the ${checker.typeToString(shape)} typings)`);
  }
}

function check(object) {
  const problems = [];
  try {
    new MODELS[object.kind](object).validate();
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    for (const e of error.errors) problems.push(`${e.instancePath || "(top)"}: ${e.message}`);
  }
  unknownFields(object, rootType(object.kind), "", problems);
  return problems;
}

const pairs = JSON.parse(readFileSync(0, "utf8"));
let failures = 0;
for (const [where, object] of pairs) {
  if (object?.apiVersion !== API_VERSION || !(object.kind in MODELS)) continue;
  const problems = check(object);
  for (const problem of problems) console.log(`  FAIL ${where}: ${problem}`);
  if (problems.length === 0) console.log(`  ok   ${where}: @kubernetes-models/prometheus-operator, strict`);
  failures += problems.length;
}
process.exit(failures ? 1 : 0);
