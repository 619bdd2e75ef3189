#!/usr/bin/python3
"""Writes the CustomResourceDefinitions of metalsync's Cluster API
infrastructure provider (metalsyncclusters, metalsyncmachines,
metalsyncmachinetemplates) and checks them.

    schemas/crds/generate.py            # rewrite the three YAML files
    schemas/crds/generate.py --check    # exit 1 if a file is stale or invalid

The YAML files are generated, not edited: MetalsyncMachine's spec appears both
in MetalsyncMachine and inside MetalsyncMachineTemplate, and the condition,
address and selector schemas are shared, so one definition here keeps the
copies equal (as controller-gen does for Go providers).

--check also proves what a reviewer would check by hand: every file parses,
every schema node is typed and described, no x-kubernetes-preserve-unknown-
fields anywhere, the contract labels are set, each openAPIV3Schema is a valid
JSON Schema (python3-jsonschema, draft 4: OpenAPI 3.0's dialect), and example
objects validate against it while broken ones do not.

Contracts followed (Cluster API book, kubernetes-sigs/cluster-api):
docs/book/src/developer/providers/contracts/infra-cluster.md and
infra-machine.md (v1beta2 contract, with the v1beta1 compatibility fields), and
internal/contract/api/v1beta2/inframachine_types.go, which reads
failureReason/failureMessage from status.deprecated.v1beta1 under the v1beta2
contract while the v1beta1 contract (internal/contract/api/v1beta1/
inframachine_types.go) reads them from status.failureReason/failureMessage.
"""

import copy
import sys
from pathlib import Path

import yaml

GROUP = "infrastructure.cluster.x-k8s.io"
VERSION = "v1alpha1"
HERE = Path(__file__).resolve().parent

# The CRD labels Cluster API reads (contracts/infra-machine.md, "All
# resources: version"): contract version -> our CRD versions. With both,
# Cluster API v1.11+ uses the v1beta2 contract (internal/contract/version.go
# picks the newest compatible contract label) and v1.5-v1.10 the v1beta1 one.
LABELS = {
    "cluster.x-k8s.io/provider": "infrastructure-metalsync",
    "cluster.x-k8s.io/v1beta2": VERSION,
    "cluster.x-k8s.io/v1beta1": VERSION,
}


def string(description, **extra):
    return {"description": description, "type": "string", **extra}


def boolean(description, **extra):
    return {"description": description, "type": "boolean", **extra}


def obj(description, properties, required=None, **extra):
    out = {"description": description, "type": "object"}
    if required:
        out["required"] = required
    out["properties"] = properties
    out.update(extra)
    return out


def string_map(description):
    return {"description": description, "type": "object", "additionalProperties": {"type": "string"}}


METADATA = {"type": "object", "description": "Standard object metadata."}
API_VERSION = string("APIVersion defines the versioned schema of this representation of an object.")
KIND = string("Kind is a string value representing the REST resource this object represents.")

# metav1.Condition, as controller-gen writes it for Kubernetes types.
CONDITIONS = {
    "description": (
        "conditions: the current state of the object, as metav1 Conditions (Cluster API v1beta2 "
        "contract). Ready is mirrored by Cluster API into the owner's InfrastructureReady; Paused says "
        "whether reconciliation is paused."),
    "type": "array",
    "maxItems": 32,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    "items": obj(
        "One aspect of the current state of this object.",
        {
            "lastTransitionTime": string(
                "When the condition last changed from one status to another.", format="date-time"),
            "message": string("A human-readable message with details about the transition.", maxLength=32768),
            "observedGeneration": {
                "description": "The .metadata.generation the condition was set from.",
                "type": "integer", "format": "int64", "minimum": 0},
            "reason": string(
                "A CamelCase reason for the condition's last transition.",
                maxLength=1024, minLength=1, pattern="^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
            "status": string("Status of the condition.", enum=["True", "False", "Unknown"]),
            "type": string(
                "Type of the condition, CamelCase (Ready, Provisioned, Paused).", maxLength=316,
                pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"),
        },
        required=["lastTransitionTime", "message", "reason", "status", "type"]),
}

HOST_SELECTOR = obj(
    "hostSelector: which pool nodes this machine may land on, a Kubernetes label selector over the "
    "labels of the Nodes in Git (metadata.labels). Only nodes with the label metalsync.dev/pool that "
    "Git keeps at provisionState available are candidates; matchLabels {metalsync.dev/pool: workers} "
    "names a pool. All of matchLabels and every matchExpression must hold; an empty selector matches "
    "every pool node.",
    {
        "matchLabels": string_map("Labels a node must carry with exactly these values."),
        "matchExpressions": {
            "description": "Requirements on node labels, all of which must hold.",
            "type": "array",
            "x-kubernetes-list-type": "atomic",
            "items": obj(
                "One requirement: a key, an operator and (for In and NotIn) values.",
                {
                    "key": string("The label key the requirement applies to.", minLength=1),
                    "operator": string(
                        "In: the label is present with one of values. NotIn: the label is absent or "
                        "its value is none of values. Exists: the label is present. DoesNotExist: the "
                        "label is absent.",
                        enum=["In", "NotIn", "Exists", "DoesNotExist"]),
                    "values": {
                        "description": "Non-empty for In and NotIn, empty for Exists and DoesNotExist.",
                        "type": "array",
                        "x-kubernetes-list-type": "atomic",
                        "items": {"type": "string"},
                    },
                },
                required=["key", "operator"]),
        },
    })

IMAGE = obj(
    "image: the operating system image Ironic writes to the node's disk. When absent, each node's "
    "own image from Git (its Node's or NodeClass's spec.image), and only nodes that have one are chosen.",
    {
        # The patterns of a Node's spec.image in schemas/node.schema.json, so one
        # image is valid in both places (the C++ side: validate_machine_spec).
        "url": string("http://, https:// or file:// URL of the image Ironic downloads.",
                      pattern=r"^(https?|file)://[^\s]+$"),
        "checksum": string(
            "md5:<32 hex>, sha256:<64 hex>, sha512:<128 hex> (lower-case hex), or an http(s) URL of a "
            "checksum file (as a Node's spec.image.checksum in Git).",
            pattern=r"^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|https?://[^\s]+)$"),
        "diskFormat": string(
            "Format of the image (Ironic's image_disk_format); when absent Ironic detects it.",
            enum=["raw", "qcow2", "vdi", "vmdk", "live-iso"]),
    },
    required=["url", "checksum"])

MACHINE_SPEC_PROPERTIES = {
    "hostSelector": HOST_SELECTOR,
    "image": IMAGE,
    "automatedCleaning": boolean(
        "automatedCleaning: clean the node's disks when the machine is deleted and the node goes back "
        "to its pool (Ironic automated cleaning). false skips it: faster, but the next machine may find "
        "the previous one's data.", default=True),
    "providerID": string(
        "providerID: set by metalsync once the node is deployed, metalsync://<instance>/<node-name>; "
        "the kubelet of the node is given the same value in the config drive's meta_data "
        "(providerid). Never set it by hand.", minLength=1, maxLength=512),
    "failureDomain": string(
        "failureDomain: place the machine on a node whose label topology.kubernetes.io/zone has this "
        "value. Cluster API copies it from the Machine (deprecated by the v1beta2 contract, which "
        "reads the Machine's own field; metalsync honours both).", minLength=1, maxLength=256),
}


def machine_spec(description):
    return obj(description, copy.deepcopy(MACHINE_SPEC_PROPERTIES))


ADDRESSES = {
    "description": "addresses: the node's addresses, as far as metalsync knows them.",
    "type": "array",
    "x-kubernetes-list-type": "atomic",
    "items": obj(
        "One address of the machine.",
        {
            "type": string("Kind of address.",
                           enum=["Hostname", "ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS"]),
            "address": string("The address.", minLength=1, maxLength=256),
        },
        required=["type", "address"]),
}

INITIALIZATION = obj(
    "initialization: Cluster API v1beta2 contract. provisioned becomes true once, when the "
    "infrastructure is ready, and stays true.",
    {"provisioned": boolean("True once the infrastructure is fully provisioned.")},
    minProperties=1)


def failure_reason(kind):
    return string(
        f"failureReason: a terminal problem reconciling the {kind} that needs a person "
        "(InvalidConfiguration, CreateError, UpdateError ...), for Cluster API v1.5-v1.10 (v1beta1 "
        "contract). Ready=False with the same reason says it under the v1beta2 contract.",
        minLength=1, maxLength=256)


def failure_message(kind):
    return string(f"failureMessage: the terminal problem reconciling the {kind}, for people.",
                  minLength=1, maxLength=10240)


def machine_status():
    return obj(
        "status: what metalsync observes of the machine. Written by metalsync only.",
        {
            "initialization": INITIALIZATION,
            "ready": boolean("ready: the v1beta1 contract's initialization flag; equals "
                             "initialization.provisioned."),
            "addresses": ADDRESSES,
            "node": string("node: the name of the Node in Git this machine has claimed.", minLength=1),
            "failureDomain": string(
                "failureDomain: the zone (topology.kubernetes.io/zone) of the claimed node.",
                minLength=1, maxLength=256),
            "failureReason": failure_reason("MetalsyncMachine"),
            "failureMessage": failure_message("MetalsyncMachine"),
            "deprecated": obj(
                "deprecated: fields Cluster API reads under the v1beta2 contract only for backward "
                "compatibility.",
                {
                    "v1beta1": obj(
                        "v1beta1: the v1beta1 contract's terminal failure fields, where Cluster API "
                        "v1.11+ reads them (internal/contract/api/v1beta2/inframachine_types.go). "
                        "They carry the same values as status.failureReason and "
                        "status.failureMessage.",
                        {
                            "failureReason": failure_reason("MetalsyncMachine"),
                            "failureMessage": failure_message("MetalsyncMachine"),
                        }),
                }),
            "conditions": copy.deepcopy(CONDITIONS),
        })


def crd(kind, plural, singular, short, description, spec, status, columns):
    schema = obj(
        description,
        {"apiVersion": API_VERSION, "kind": KIND, "metadata": METADATA, "spec": spec},
    )
    if status is not None:
        schema["properties"]["status"] = status
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns + [{
            "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
            "description": "Time since creation."}],
    }
    if status is not None:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": dict(LABELS)},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind, "listKind": kind + "List", "plural": plural, "singular": singular,
                "shortNames": [short], "categories": ["cluster-api"],
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


CLUSTER_COLUMN = {
    "name": "Cluster", "type": "string",
    "jsonPath": ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']",
    "description": "The Cluster API Cluster this object belongs to."}


def ready_column(what):
    return {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
            "description": f"The {what}'s Ready condition."}


def cluster_crd():
    spec = obj(
        "spec: the cluster's infrastructure as Git declares it.",
        {
            "controlPlaneEndpoint": obj(
                "controlPlaneEndpoint: where the workload cluster's API server is reached (a virtual IP "
                "or a load balancer in front of the control plane nodes); Cluster API copies it to the "
                "Cluster.",
                {
                    "host": string("Host name or IP address of the API server.", minLength=1,
                                   maxLength=512),
                    "port": {"description": "Port of the API server.", "type": "integer",
                             "format": "int32", "minimum": 1, "maximum": 65535},
                }),
        })
    status = obj(
        "status: what metalsync observes of the cluster's infrastructure. Written by metalsync only.",
        {
            "initialization": INITIALIZATION,
            "ready": boolean("ready: the v1beta1 contract's initialization flag; equals "
                             "initialization.provisioned."),
            "failureDomains": {
                "description": (
                    "failureDomains: the zones (topology.kubernetes.io/zone) of the pool nodes, in "
                    "the v1beta2 contract's shape: a list keyed by name (contracts/infra-cluster.md). "
                    "Cluster API v1.5-v1.10 (v1beta1 contract) expect a map here instead, so metalsync "
                    "writes this field only when the management cluster reads the v1beta2 contract."),
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": obj(
                    "One failure domain.",
                    {
                        "name": string("The zone's name, unique in the list.", minLength=1,
                                       maxLength=256),
                        "controlPlane": boolean("Whether control plane machines may be placed here."),
                        "attributes": string_map("Free-form attributes of the failure domain."),
                    },
                    required=["name"]),
            },
            "conditions": copy.deepcopy(CONDITIONS),
        })
    return crd(
        "MetalsyncCluster", "metalsyncclusters", "metalsynccluster", "msc",
        "MetalsyncCluster is the infrastructure of a Cluster API cluster whose machines are bare-metal "
        "nodes declared in metalsync's Git repository (Cluster API InfraCluster).",
        spec, status,
        [CLUSTER_COLUMN,
         {"name": "Endpoint", "type": "string", "jsonPath": ".spec.controlPlaneEndpoint.host",
          "description": "The control plane endpoint's host."},
         {"name": "Provisioned", "type": "boolean", "jsonPath": ".status.initialization.provisioned",
          "description": "The infrastructure is provisioned."},
         ready_column("cluster infrastructure")])


def machine_crd():
    return crd(
        "MetalsyncMachine", "metalsyncmachines", "metalsyncmachine", "msm",
        "MetalsyncMachine is one Cluster API machine on a bare-metal node that metalsync claims from a "
        "pool of Nodes declared in Git, deploys through Ironic with the machine's bootstrap data and "
        "releases when the machine is deleted (Cluster API InfraMachine).",
        machine_spec("spec: the node this machine wants and what to deploy on it."),
        machine_status(),
        [CLUSTER_COLUMN,
         {"name": "Node", "type": "string", "jsonPath": ".status.node",
          "description": "The Node in Git this machine has claimed."},
         {"name": "ProviderID", "type": "string", "jsonPath": ".spec.providerID",
          "description": "The provider ID, once deployed."},
         {"name": "Provisioned", "type": "boolean", "jsonPath": ".status.initialization.provisioned",
          "description": "The node is deployed."},
         ready_column("machine"),
         {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason",
          "description": "Why the machine is (not) ready.", "priority": 1}])


def template_crd():
    spec = obj(
        "spec: the template every machine of a MachineDeployment or control plane is made from.",
        {
            "template": obj(
                "template: the machines' metadata and spec.",
                {
                    "metadata": obj(
                        "metadata: labels and annotations given to each machine made from the "
                        "template.",
                        {
                            "labels": string_map("Labels of each machine."),
                            "annotations": string_map("Annotations of each machine."),
                        }),
                    "spec": machine_spec("spec: the MetalsyncMachine spec of each machine."),
                },
                required=["spec"]),
        },
        required=["template"])
    return crd(
        "MetalsyncMachineTemplate", "metalsyncmachinetemplates", "metalsyncmachinetemplate", "msmt",
        "MetalsyncMachineTemplate is the template Cluster API makes MetalsyncMachines from "
        "(InfraMachineTemplate).",
        spec, None, [])


FILES = {
    "metalsyncclusters.yaml": cluster_crd,
    "metalsyncmachines.yaml": machine_crd,
    "metalsyncmachinetemplates.yaml": template_crd,
}

HEADER = ("# Generated by schemas/crds/generate.py: edit that file and run it, not this one.\n"
          "# metalsync's Cluster API infrastructure provider (see schemas/README.md).\n")


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def render(document):
    return HEADER + yaml.dump(document, Dumper=Dumper, sort_keys=False, width=100,
                              default_flow_style=False)


# ---------------------------------------------------------------- checks

def walk(schema, path, problems):
    if not isinstance(schema, dict):
        problems.append(f"{path}: not a schema object")
        return
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: x-kubernetes-preserve-unknown-fields")
    if "type" not in schema:
        problems.append(f"{path}: no type")
    # Item schemas of scalar lists and maps are described by their parent.
    if "description" not in schema and not (path.endswith("[]") and schema.get("type") == "string") \
            and not path.endswith("{}"):
        problems.append(f"{path}: no description")
    for name, sub in schema.get("properties", {}).items():
        walk(sub, f"{path}.{name}", problems)
    if "items" in schema:
        walk(schema["items"], path + "[]", problems)
    if isinstance(schema.get("additionalProperties"), dict):
        walk(schema["additionalProperties"], path + "{}", problems)


EXAMPLES = {
    "MetalsyncMachine": (
        {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MetalsyncMachine",
            "metadata": {"name": "workers-abc12", "namespace": "default"},
            "spec": {
                "hostSelector": {
                    "matchLabels": {"metalsync.dev/pool": "workers"},
                    "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                          "values": ["rack1", "rack2"]},
                                         {"key": "gpu", "operator": "DoesNotExist"}],
                },
                "image": {"url": "http://images.example/ubuntu.qcow2",
                          "checksum": "sha256:" + "a" * 64, "diskFormat": "qcow2"},
                "automatedCleaning": False,
                "providerID": "metalsync://site-a/r1-node-03",
                "failureDomain": "rack1",
            },
            "status": {
                "initialization": {"provisioned": True}, "ready": True, "node": "r1-node-03",
                "failureDomain": "rack1",
                "addresses": [{"type": "Hostname", "address": "workers-abc12"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                "observedGeneration": 1,
                                "lastTransitionTime": "2026-12-02T17:00:00Z"}],
                "deprecated": {"v1beta1": {"failureReason": "CreateError", "failureMessage": "x"}},
            },
        },
        [
            ("spec.hostSelector.matchExpressions[0].operator", "in"),
            ("spec.image", {"url": "http://x"}),
            ("spec.image.url", "ftp://images.example/x.raw"),
            ("spec.image.checksum", "sha256:ABC"),
            ("spec.automatedCleaning", "no"),
            ("status.conditions[0].status", "Maybe"),
            ("status.addresses[0].type", "PublicIP"),
        ]),
    "MetalsyncCluster": (
        {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MetalsyncCluster",
            "metadata": {"name": "baremetal-cluster"},
            "spec": {"controlPlaneEndpoint": {"host": "10.0.20.10", "port": 6443}},
            "status": {"initialization": {"provisioned": True}, "ready": True,
                       "failureDomains": [{"name": "rack1", "controlPlane": True},
                                          {"name": "rack2", "attributes": {"room": "b"}}]},
        },
        [
            ("spec.controlPlaneEndpoint.port", 70000),
            ("status.failureDomains", {"rack1": {"controlPlane": True}}),
            ("status.initialization", {}),
        ]),
    "MetalsyncMachineTemplate": (
        {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MetalsyncMachineTemplate",
            "metadata": {"name": "workers"},
            "spec": {"template": {"spec": {
                "hostSelector": {"matchLabels": {"metalsync.dev/pool": "workers"}},
                "image": {"url": "http://images.example/ubuntu.qcow2", "checksum": "sha256:" + "b" * 64}}}},
        },
        [
            ("spec.template", {}),
            ("spec.template.spec.image.diskFormat", "iso"),
        ]),
}


def set_path(document, path, value):
    parts = path.replace("]", "").replace("[", ".").split(".")
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    node[int(last) if last.isdigit() else last] = value


def check(documents):
    import jsonschema

    problems = []
    for name, document in documents.items():
        labels = document["metadata"]["labels"]
        for key, value in LABELS.items():
            if labels.get(key) != value:
                problems.append(f"{name}: label {key} is not {value}")
        version = document["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        walk(schema, name, problems)
        try:
            jsonschema.Draft4Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            problems.append(f"{name}: not a JSON Schema: {error.message}")
            continue
        validator = jsonschema.Draft4Validator(schema)
        kind = document["spec"]["names"]["kind"]
        good, bad = EXAMPLES[kind]
        for error in validator.iter_errors(good):
            problems.append(f"{name}: example rejected at {list(error.absolute_path)}: {error.message}")
        for path, value in bad:
            broken = copy.deepcopy(good)
            set_path(broken, path, value)
            if validator.is_valid(broken):
                problems.append(f"{name}: accepts {path} = {value!r}")
    machine = documents["metalsyncmachines.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    template = documents["metalsyncmachinetemplates.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    inner = template["properties"]["spec"]["properties"]["template"]["properties"]["spec"]
    if inner["properties"] != machine["properties"]["spec"]["properties"]:
        problems.append("the template's spec differs from MetalsyncMachine's spec")
    return problems


def main():
    check_only = "--check" in sys.argv[1:]
    documents = {name: build() for name, build in FILES.items()}
    stale = []
    for name, document in documents.items():
        text = render(document)
        path = HERE / name
        # Parsed back from the text: what kubectl and metalsync would read.
        if yaml.safe_load(text) != document:
            stale.append(f"{name}: does not round-trip through YAML")
        if check_only:
            if not path.exists() or path.read_text() != text:
                stale.append(f"{name}: stale, run schemas/crds/generate.py")
        else:
            path.write_text(text)
    problems = stale + check({name: yaml.safe_load((HERE / name).read_text()) for name in FILES})
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(FILES)} CRDs {'checked' if check_only else 'written and checked'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
