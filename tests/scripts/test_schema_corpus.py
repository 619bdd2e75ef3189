#!/usr/bin/python3
"""The JSON Schemas in schemas/ and the C++ loader (`metalsync validate`) must
agree on every file of tests/corpus/, and both must accept examples/repo.

  tests/corpus/valid/*.yaml    one metalsync document each; valid for both.
  tests/corpus/invalid/*.yaml  one violation each; invalid for both, and the
                               C++ output names the field of the first line's
                               `# expect: <field path>` comment.
  tests/corpus/cross/*.yaml    rules only the C++ loader can check (several
                               documents, credentials `..`, IPv4 octets, API
                               group typos): the schemas accept every document,
                               `metalsync validate` exits 1 and names the
                               `# expect:` field, or for `# expect: reason: TEXT`
                               prints a diagnostic containing TEXT.

YAML is read with YAML 1.2 core-schema scalar resolution (what the C++ loader
implements), not PyYAML's YAML 1.1 defaults: `on`, `yes`, `10:20:30` and
`2024-01-01` are strings, `0o17` is an integer, `1e3` a float.

Environment: METALSYNC_BINARY (the built `metalsync`), METALSYNC_SOURCE_DIR
(the source tree; defaults to this script's checkout).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

API_VERSION = "metalsync.dev/v1alpha1"
KINDS = {"Node": "node", "NodeClass": "nodeclass", "Policy": "policy"}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
BINARY_TIMEOUT_SECONDS = 60


# --- YAML 1.2 core schema on top of PyYAML ---------------------------------

class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit resolution and duplicate
    mapping keys rejected."""

    yaml_implicit_resolvers = {}

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    marker = (type(key), key)
                    hash(marker)
                except TypeError:
                    continue  # unhashable keys fail in the base constructor
                if marker in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first at line {seen[marker].line + 1})",
                        key_node.start_mark)
                seen[marker] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _construct_int12(loader, node):
    value = loader.construct_scalar(node)
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value, 10)  # 017 is seventeen in YAML 1.2, not octal


def _construct_float12(loader, node):
    value = loader.construct_scalar(node)
    lowered = value.lower()
    if lowered in (".inf", "+.inf"):
        return float("inf")
    if lowered == "-.inf":
        return float("-inf")
    if lowered == ".nan":
        return float("nan")
    return float(value)


_RESOLVERS = [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     list("-+.0123456789")),
]
for _tag, _regexp, _first in _RESOLVERS:
    Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regexp), _first)
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int12)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float12)


def load_documents(path):
    """All non-empty documents of a file, or raises yaml.YAMLError."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=Yaml12Loader) if d is not None]


def self_test_loader():
    """The resolution rules this whole test depends on."""
    doc = yaml.load(
        "a: on\nb: yes\nc: 10:20:30:40:50:60\nd: 2024-01-01\ne: 0o17\nf: 0x1F\ng: 017\n"
        "h: 1e3\ni: .5\nj: True\nk: ~\nl:\nm: .inf\nn: -12\no: '1'\np: 1_000\nq: NULL\nr: 1.\n",
        Loader=Yaml12Loader)
    expected = {"a": "on", "b": "yes", "c": "10:20:30:40:50:60", "d": "2024-01-01", "e": 15, "f": 31,
                "g": 17, "h": 1000.0, "i": 0.5, "j": True, "k": None, "l": None, "m": float("inf"),
                "n": -12, "o": "1", "p": "1_000", "q": None, "r": 1.0}
    assert doc == expected, f"YAML 1.2 loader self-test: {doc!r}"
    assert type(doc["e"]) is int and type(doc["h"]) is float
    try:
        yaml.load("a: 1\na: 2\n", Loader=Yaml12Loader)
    except yaml.YAMLError:
        pass
    else:
        raise AssertionError("YAML 1.2 loader self-test: duplicate key accepted")


# --- Reporting ---------------------------------------------------------------

class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, label, problems):
        if problems:
            self.failed += 1
            print(f"FAIL {label}")
            for problem in problems:
                for line in str(problem).splitlines():
                    print(f"     {line}")
        else:
            self.passed += 1
            print(f"ok   {label}")


# --- Schemas -----------------------------------------------------------------

def walk_properties(schema, path):
    """Yields (path, subschema) for every entry of every `properties`
    (conditions under if/then/else excepted: editors show none of them)."""
    if isinstance(schema, list):
        for item in schema:
            yield from walk_properties(item, path)
        return
    if not isinstance(schema, dict):
        return
    for key, sub in schema.items():
        if key == "properties":
            for name, prop in sub.items():
                prop_path = f"{path}.{name}" if path else name
                yield prop_path, prop
                yield from walk_properties(prop, prop_path)
        elif key not in ("if", "then", "else") and isinstance(sub, (dict, list)):
            yield from walk_properties(sub, path + "[]" if key == "items" else path)


def load_schemas(source_dir, report):
    validators = {}
    schema_dir = source_dir / "schemas"
    for schema_path in sorted(schema_dir.glob("*.schema.json")):
        problems = []
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
            jsonschema.Draft202012Validator.check_schema(schema)
        except (ValueError, jsonschema.SchemaError) as e:
            report.check(str(schema_path.relative_to(source_dir)), [e])
            continue
        if schema.get("$schema") != SCHEMA_DIALECT:
            problems.append(f"$schema is not {SCHEMA_DIALECT}")
        if not str(schema.get("$id", "")).endswith("/" + schema_path.name):
            problems.append(f"$id does not end with /{schema_path.name}")
        for path, sub in walk_properties(schema, ""):
            if isinstance(sub, dict) and not sub.get("description"):
                problems.append(f"{path}: no description")
        report.check(str(schema_path.relative_to(source_dir)), problems)
        validators[schema_path.name] = (schema, jsonschema.Draft202012Validator(schema))

    missing = [f"{stem}.schema.json" for stem in KINDS.values() if f"{stem}.schema.json" not in validators]
    report.check("schemas: one schema per kind", [f"missing {m}" for m in missing])
    if missing:
        return None

    # Node and NodeClass share every spec field but bmc (and the Node-only
    # ones); the files are self-contained, so keep the copies identical.
    node_spec = validators["node.schema.json"][0]["properties"]["spec"]["properties"]
    class_spec = validators["nodeclass.schema.json"][0]["properties"]["spec"]["properties"]
    problems = []
    for name, sub in class_spec.items():
        if name == "bmc":
            for field, bmc_sub in sub["properties"].items():
                if node_spec["bmc"]["properties"].get(field) != bmc_sub:
                    problems.append(f"spec.bmc.{field} differs between node and nodeclass schemas")
        elif node_spec.get(name) != sub:
            problems.append(f"spec.{name} differs between node and nodeclass schemas")
    extra = set(node_spec) - set(class_spec) - {"class", "ports"}
    problems += [f"spec.{name} is in the node schema only" for name in sorted(extra)]
    report.check("schemas: node and nodeclass agree on shared fields", problems)

    return {kind: validators[f"{stem}.schema.json"][1] for kind, stem in KINDS.items()}


def is_metalsync_document(doc):
    return isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION and doc.get("kind") in KINDS


def dotted(path):
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def error_fields(error):
    """The C++ loader's dotted field paths for one jsonschema error (and the
    errors under it): a missing required field and an unknown field are named
    by their own path."""
    fields = set()
    base = list(error.absolute_path)
    if error.validator == "required":
        match = re.match(r"^'(.*)' is a required property$", error.message)
        if match:
            fields.add(dotted(base + [match.group(1)]))
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                fields.add(dotted(base + [key]))
    else:
        fields.add(dotted(base))
    for sub in error.context or []:
        fields |= error_fields(sub)
    return fields


def schema_errors(validators, doc):
    """List of (field, message) for one metalsync document."""
    errors = []
    for error in validators[doc["kind"]].iter_errors(doc):
        for field in sorted(error_fields(error)):
            errors.append((field, error.message))
    return errors


def first_line_expectation(path):
    with open(path, encoding="utf-8") as f:
        first = f.readline().strip()
    match = re.match(r"^#\s*expect:\s*(.+?)\s*$", first)
    return match.group(1) if match else None


# --- The C++ half ------------------------------------------------------------

DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.*)$")


def run_validate(binary, target):
    """(exit code, combined output lines) of `metalsync validate TARGET`."""
    try:
        proc = subprocess.run([binary, "validate", str(target)], capture_output=True, text=True,
                              timeout=BINARY_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return None, [f"metalsync validate {target}: no answer in {BINARY_TIMEOUT_SECONDS}s"]
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def output_names(lines, expectation):
    """Whether a `file:line:col: field: reason` line names the expected field,
    or for `reason: TEXT` whether a diagnostic line contains TEXT
    (case-insensitive)."""
    for line in lines:
        match = DIAGNOSTIC.match(line)
        if not match:
            continue
        rest = match.group("rest")
        if expectation.startswith("reason:"):
            text = expectation[len("reason:"):].strip().lower()
            if text in rest.lower():
                return True
        elif rest.startswith(expectation + ": "):
            return True
    return False


def check_binary_verdict(binary, path, want_valid, expectation):
    problems = []
    code, lines = run_validate(binary, path)
    if code not in (0, 1):
        problems.append(f"metalsync validate exited {code} (want 0 or 1)")
    elif want_valid and code != 0:
        problems.append("metalsync validate rejects a valid file")
    elif not want_valid and code != 1:
        problems.append("metalsync validate accepts an invalid file")
    elif not want_valid and not output_names(lines, expectation):
        problems.append(f"metalsync validate output does not name `{expectation}`")
    if problems:
        problems += [f"> {line}" for line in lines[:20]]
    return problems


# --- Checks ------------------------------------------------------------------

def check_corpus_file(validators, binary, path, category):
    """valid/ and invalid/: one metalsync document per file."""
    problems = []
    expectation = first_line_expectation(path)
    if category == "invalid" and not expectation:
        return ["first line is not `# expect: <field path>`"]
    if category == "valid" and expectation:
        problems.append("a valid file carries an `# expect:` comment")

    try:
        docs = load_documents(path)
        load_error = None
    except yaml.YAMLError as e:
        docs, load_error = [], e

    if load_error is not None:
        # A YAML-level violation (duplicate key): invalid for the schema side.
        schema_valid = False
        if category == "valid":
            problems.append(f"YAML does not load: {load_error}")
    elif len(docs) != 1 or not is_metalsync_document(docs[0]):
        return [f"want exactly one {API_VERSION} Node/NodeClass/Policy document"]
    else:
        errors = schema_errors(validators, docs[0])
        schema_valid = not errors
        if category == "valid" and errors:
            problems += [f"schema: {field}: {message}" for field, message in errors]
        if category == "invalid":
            if schema_valid:
                problems.append("schema accepts the file")
            elif expectation not in {field for field, _ in errors}:
                problems.append(f"schema errors do not include `{expectation}`:")
                problems += [f"  {field}: {message}" for field, message in errors]

    if binary:
        problems += check_binary_verdict(binary, path, category == "valid", expectation)
    return problems


def check_cross_file(validators, binary, path):
    expectation = first_line_expectation(path)
    if not expectation:
        return ["first line is not `# expect: <field path>` or `# expect: reason: <text>`"]
    problems = []
    try:
        docs = load_documents(path)
    except yaml.YAMLError as e:
        return [f"YAML does not load: {e}"]
    for doc in docs:
        if is_metalsync_document(doc):
            for field, message in schema_errors(validators, doc):
                problems.append(f"schema rejects {doc['kind']} {doc.get('metadata', {}).get('name')}: "
                                f"{field}: {message}")
    if binary:
        problems += check_binary_verdict(binary, path, False, expectation)
    return problems


def normalise_mac(mac):
    return mac.lower()


def check_example_repo(validators, repo):
    """Schema validity of every metalsync document, the modeline, and the
    cross-document rules the example is meant to honour."""
    problems = []
    files = sorted(p for p in repo.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        return ["no YAML files"], 0
    nodes, classes, policies, kube = {}, {}, [], set()
    for path in files:
        rel = path.relative_to(repo)
        try:
            docs = load_documents(path)
        except yaml.YAMLError as e:
            problems.append(f"{rel}: YAML does not load: {e}")
            continue
        metalsync_docs = [d for d in docs if is_metalsync_document(d)]
        if metalsync_docs:
            first = path.read_text(encoding="utf-8").splitlines()[0]
            match = re.match(r"^# yaml-language-server: \$schema=(\S+)$", first)
            want = {f"{KINDS[d['kind']]}.schema.json" for d in metalsync_docs}
            if not match:
                problems.append(f"{rel}: first line is not a yaml-language-server $schema modeline")
            elif not (path.parent / match.group(1)).resolve().is_file():
                problems.append(f"{rel}: modeline schema {match.group(1)} does not exist")
            elif Path(match.group(1)).name not in want:
                problems.append(f"{rel}: modeline names {match.group(1)}, documents are {sorted(want)}")
        for doc in docs:
            if not isinstance(doc, dict):
                problems.append(f"{rel}: a document is not a mapping")
                continue
            api_version = str(doc.get("apiVersion", ""))
            if api_version.split("/")[0] == "metalsync.dev" and not is_metalsync_document(doc):
                problems.append(f"{rel}: unknown metalsync kind or version {api_version} {doc.get('kind')}")
                continue
            if is_metalsync_document(doc):
                problems += [f"{rel}: {field}: {message}" for field, message in schema_errors(validators, doc)]
                name = doc["metadata"]["name"]
                table = {"Node": nodes, "NodeClass": classes}.get(doc["kind"])
                if table is not None:
                    if name in table:
                        problems.append(f"{rel}: duplicate {doc['kind']} {name}")
                    table[name] = doc["spec"]
                else:
                    policies.append(name)
            else:
                metadata = doc.get("metadata") or {}
                key = (api_version.split("/")[0] if "/" in api_version else "", doc.get("kind"),
                       metadata.get("namespace", ""), metadata.get("name"))
                if not doc.get("kind") or not metadata.get("name"):
                    problems.append(f"{rel}: Kubernetes object without kind or metadata.name")
                elif key in kube:
                    problems.append(f"{rel}: duplicate Kubernetes object {key}")
                kube.add(key)
    if len(policies) > 1:
        problems.append("more than one Policy")
    macs, bmcs = {}, {}
    for name, spec in nodes.items():
        cls = {}
        if "class" in spec:
            if spec["class"] not in classes:
                problems.append(f"node {name}: class {spec['class']} does not exist")
            cls = classes.get(spec["class"], {})
        bmc = {**cls.get("bmc", {}), **spec["bmc"]}
        driver = bmc.get("driver")
        if not driver:
            problems.append(f"node {name}: no driver")
        elif driver != "fake-hardware" and not bmc.get("credentials"):
            problems.append(f"node {name}: no credentials")
        state = spec.get("provisionState", cls.get("provisionState"))
        if state == "active" and not (spec.get("image") or cls.get("image")):
            problems.append(f"node {name}: active without image")
        port = bmc.get("port", 623 if driver == "ipmi" else 443)
        claim = (bmc["address"].lower(), port)
        if claim in bmcs:
            problems.append(f"node {name}: BMC {claim} also used by {bmcs[claim]}")
        bmcs[claim] = name
        for port_spec in spec.get("ports", []):
            mac = normalise_mac(port_spec["mac"])
            if mac in macs:
                problems.append(f"node {name}: MAC {mac} also used by {macs[mac]}")
            macs[mac] = name
    return problems, len(nodes)


def main():
    source_dir = Path(os.environ.get("METALSYNC_SOURCE_DIR") or Path(__file__).resolve().parents[2])
    binary = os.environ.get("METALSYNC_BINARY", "")
    report = Report()

    self_test_loader()

    if not binary or not os.access(binary, os.X_OK):
        report.check("METALSYNC_BINARY", [f"not set or not executable: {binary!r}"])
        binary = None

    validators = load_schemas(source_dir, report)
    if validators is None:
        print(f"{report.passed} passed, {report.failed} failed")
        return 1

    repo = source_dir / "examples" / "repo"
    problems, node_count = check_example_repo(validators, repo)
    if node_count < 2 and not problems:
        problems.append(f"only {node_count} nodes")
    report.check("examples/repo (schemas and cross-document rules)", problems)
    if binary:
        code, lines = run_validate(binary, repo)
        report.check("examples/repo (metalsync validate)",
                     [] if code == 0 else [f"metalsync validate exited {code}"] + [f"> {l}" for l in lines[:20]])

    corpus = source_dir / "tests" / "corpus"
    minimum = {"valid": 12, "invalid": 25, "cross": 1}
    for category in ("valid", "invalid", "cross"):
        files = sorted((corpus / category).glob("*.yaml"))
        report.check(f"tests/corpus/{category}: at least {minimum[category]} files",
                     [] if len(files) >= minimum[category] else [f"only {len(files)}"])
        for path in files:
            label = str(path.relative_to(source_dir))
            if category == "cross":
                report.check(label, check_cross_file(validators, binary, path))
            else:
                report.check(label, check_corpus_file(validators, binary, path, category))

    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
