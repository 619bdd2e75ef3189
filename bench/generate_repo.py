#!/usr/bin/python3
"""Write a realistic N-node metalsync repository and commit it to Git.

usage: generate_repo.py DIR N [--files-per-rack K] [--nodes-per-file M]

Layout (as a site would keep it):
  policy.yaml                       one Policy
  classes/dell-ipmi.yaml            NodeClass, ipmi, class image (sha256)
  classes/hpe-redfish.yaml          NodeClass, redfish virtual media
  nodes/rackNNN/batch-KK.yaml       M nodes per file (multi-document)

Nodes are spread over racks of K files each (K * M nodes per rack); even racks
use the Dell class, odd racks the HPE class. Every MAC and BMC address:port is
unique. Provision states: ~60% active (some with their own image and a config
drive), ~30% available, ~10% manageable (some in maintenance, some with clean
steps). Every node carries the annotation `bench.metalsync.dev/edit: "0"`,
which bench_load edits to make a one-file change.

DIR becomes a Git repository (branch main) with one commit.
"""

import argparse
import os
import subprocess
import sys

POLICY = """\
apiVersion: metalsync.dev/v1alpha1
kind: Policy
metadata:
  name: default
spec:
  prune: true
  massDeletion:
    maxPercent: 20
    allow: false
  maxRetries: 5
  limits:
    maxProvisioning: 50
    ironicQPS: 20
    kubernetesQPS: 20
    perBMC: 1
"""

CLASSES = {
    "dell-ipmi": """\
# Dell PowerEdge R650, managed over IPMI.
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata:
  name: dell-ipmi
  labels:
    vendor: dell
spec:
  bmc:
    driver: ipmi
    credentials: dell-bmc
  interfaces:
    boot: ipxe
    deploy: direct
  automatedClean: true
  properties:
    cpu_arch: x86_64
    capabilities: "boot_mode:uefi"
    root_device:
      size: ">= 400"
  resourceClass: baremetal
  inspect: true
  expect:
    cpus: 32
    memoryMiB: 131072
    disks: 2
    cpuArch: x86_64
  image:
    source: http://images.example/ubuntu-22.04-server-amd64.qcow2
    checksum: sha256:4d5538ecf8b3fca974e3bfe421be249fd81aba2283ef201d89b67a8743254eb4
""",
    "hpe-redfish": """\
# HPE ProLiant DL380 Gen10 Plus, managed over Redfish with virtual media boot.
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata:
  name: hpe-redfish
  labels:
    vendor: hpe
spec:
  bmc:
    driver: redfish
    credentials: hpe-bmc
    verifyCA: false
  interfaces:
    boot: redfish-virtual-media
    inspect: redfish
    management: redfish
    power: redfish
    deploy: direct
  automatedClean: true
  properties:
    cpu_arch: x86_64
    capabilities: "boot_mode:uefi"
    root_device:
      name: /dev/nvme0n1
  resourceClass: baremetal
  inspect: true
  expect:
    cpus: 64
    memoryMiB: 262144
    disks: 2
    cpuArch: x86_64
  image:
    source: http://images.example/debian-12-generic-amd64.qcow2
    checksum: sha256:9b1e0f3c4a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7
""",
}


def mac(prefix, i):
    return "%s:%02x:%02x:%02x" % (prefix, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)


def node_doc(i, rack, klass):
    name = "r%03d-n%05d" % (rack, i)
    # 10.x.y.z, unique for i < 2^24 - 1; ipmi nodes also name port 623.
    addr = "10.%d.%d.%d" % (((i + 1) >> 16) & 0xFF, ((i + 1) >> 8) & 0xFF, (i + 1) & 0xFF)
    kind = i % 10  # 0-5 active, 6-8 available, 9 manageable
    out = [
        "apiVersion: metalsync.dev/v1alpha1",
        "kind: Node",
        "metadata:",
        "  name: %s" % name,
        "  labels:",
        "    rack: r%03d" % rack,
        "    role: %s" % ("storage" if i % 7 == 0 else "compute"),
        "  annotations:",
        "    inventory.example/asset-tag: \"DC1-R%03d-U%02d\"" % (rack, i % 42),
        "    bench.metalsync.dev/edit: \"0\"",
        "spec:",
        "  class: %s" % klass,
        "  bmc:",
        "    address: %s" % addr,
    ]
    if klass == "dell-ipmi":
        out.append("    port: 623")
    else:
        out.append("    systemId: /redfish/v1/Systems/1")
    out += [
        "  ports:",
        "    - mac: %s" % mac("3c:ec:ef", i),
        "    - mac: %s" % mac("b8:ca:3a", i),
        "      pxe: false",
        "      physicalNetwork: storage",
    ]
    if kind <= 5:
        out.append("  provisionState: active")
        out.append("  power: \"on\"")
        if kind == 0:
            out += [
                "  image:",
                "    source: http://images.example/rocky-9-generic-amd64.qcow2",
                "    checksum: sha256:%064x" % (0xABCDEF0123456789 * (i + 1)),
                "    rootGiB: 200",
            ]
        if kind in (0, 1):
            out += [
                "  configDrive:",
                "    userData: |",
                "      #cloud-config",
                "      hostname: %s" % name,
                "      fqdn: %s.metal.example" % name,
                "      packages: [chrony, lldpd]",
                "    metaData:",
                "      role: %s" % ("storage" if i % 7 == 0 else "compute"),
                "      rack: r%03d" % rack,
            ]
    elif kind <= 8:
        out.append("  provisionState: available")
    else:
        out.append("  provisionState: manageable")
        if i % 20 == 9:
            out.append("  maintenance: true")
            out.append("  maintenanceReason: \"PSU failed, ticket DC-%d\"" % (1000 + i))
            out.append("  power: \"off\"")
        else:
            out += [
                "  cleanSteps:",
                "    - interface: deploy",
                "      step: erase_devices",
                "    - interface: raid",
                "      step: create_configuration",
                "      args:",
                "        target_raid_config:",
                "          logical_disks:",
                "            - size_gb: MAX",
                "              raid_level: \"1\"",
                "              is_root_volume: true",
            ]
    return "\n".join(out) + "\n"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("nodes", type=int)
    ap.add_argument("--files-per-rack", type=int, default=5)
    ap.add_argument("--nodes-per-file", type=int, default=40)
    args = ap.parse_args()
    if args.nodes < 0 or args.files_per_rack < 1 or args.nodes_per_file < 1:
        ap.error("N must be >= 0, K and M >= 1")
    if args.nodes >= (1 << 24) - 1:
        ap.error("N too large for unique addresses")

    root = args.dir
    os.makedirs(root, exist_ok=True)
    write(os.path.join(root, "policy.yaml"), "# Repository-wide rules.\n" + POLICY)
    for name, text in CLASSES.items():
        write(os.path.join(root, "classes", name + ".yaml"), text)

    per_rack = args.files_per_rack * args.nodes_per_file
    i = 0
    while i < args.nodes:
        rack = i // per_rack
        batch = (i % per_rack) // args.nodes_per_file
        klass = "dell-ipmi" if rack % 2 == 0 else "hpe-redfish"
        docs = []
        for _ in range(args.nodes_per_file):
            if i >= args.nodes:
                break
            docs.append(node_doc(i, rack, klass))
            i += 1
        header = "# yaml-language-server: $schema=../../schemas/node.schema.json\n"
        write(os.path.join(root, "nodes", "rack%03d" % rack, "batch-%02d.yaml" % batch),
              header + "---\n".join(docs))

    def git(*a):
        subprocess.run(["git", "-C", root] + list(a), check=True, stdout=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    git("config", "user.name", "metalsync bench")
    git("config", "user.email", "bench@metalsync.invalid")
    git("config", "commit.gpgsign", "false")
    git("add", "-A")
    git("commit", "-q", "-m", "%d nodes" % args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
