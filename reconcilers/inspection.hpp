#pragma once

// Inspection results and the spec's `expect`: what the hardware reported, and
// whether it is what Git says the node should have. Pure: no Ironic call, no
// store; the runner fetches, the daemon stores, the planner decides.
//
// Where the facts come from, best first:
// - Ironic's node inventory (GET /v1/nodes/{id}/inventory, API 1.81), as
//   ironic-python-agent sends it: {"inventory": {"cpu": {"count",
//   "architecture"}, "memory": {"physical_mb", "total"}, "disks": [...]},
//   "plugin_data": {...}};
// - the node's `properties` (cpus, memory_mb, local_gb, cpu_arch), which
//   in-band and out-of-band inspection both write, when Ironic has no
//   inventory (404: the fake and most out-of-band inspect interfaces store
//   none) or speaks an API older than 1.81. Properties carry no disk count.
//
// How `expect` is compared (the published schema says "minimum" for the
// counts): cpus, memoryMiB and disks are floors, the inspected value must be
// at least the expected one; cpuArch must be equal (case-insensitive, with
// amd64 = x86_64 and arm64 = aarch64). Floors, as Metal3's hardware
// classification does with its minimum counts and sizes, because `expect`
// guards against deploying onto a node that lost a DIMM or a disk, or onto
// the wrong, smaller machine — more than asked is not a reason to refuse it.
// There is no tolerance on memory: physical_mb is the installed size, exact;
// the floor is the operator's to round down (16000 for 16 GiB, as
// docs/architecture.md §1.2 does). When only `memory.total` (usable bytes, a few
// percent below installed) is reported, it is used as it is and the floor
// has to allow for that.
// A field the inspection did not report (disks from properties, anything
// missing) is "not checkable": reported, never a mismatch.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sources/desired_state.hpp"

namespace metalsync {

inline constexpr const char* k_inspection_source_inventory = "inventory";
inline constexpr const char* k_inspection_source_properties = "properties";

struct InspectedHardware {
    std::string source;      // k_inspection_source_inventory | k_inspection_source_properties
    std::optional<int> cpus; // logical CPUs
    std::optional<std::int64_t> memory_mib;
    std::optional<int> disks; // inventory only
    std::optional<std::string> cpu_arch;
    std::optional<std::int64_t> local_gib; // properties' local_gb; shown, not compared
};

// GET /v1/nodes/{id}/inventory's body (or the bare `inventory` object).
[[nodiscard]] InspectedHardware hardware_from_inventory(const nlohmann::json& body);
// A node's properties; values may be numbers or numeric strings.
[[nodiscard]] InspectedHardware hardware_from_properties(const nlohmann::json& properties);
// The keys of `properties` inspection writes (cpus, memory_mb, local_gb, cpu_arch).
[[nodiscard]] nlohmann::json inspection_properties(const nlohmann::json& properties);

// What the runner hands back and the store keeps (InspectionRecord::inventory):
// {"source": ..., "data": <inventory body or properties subset>, "expect": <expect_key>}.
[[nodiscard]] nlohmann::json collected_inspection(const std::string& source, nlohmann::json data,
                                                  const std::string& expect_key);
[[nodiscard]] InspectedHardware hardware_from_collected(const nlohmann::json& collected);
[[nodiscard]] std::string expect_key_of(const nlohmann::json& collected);

// A canonical text of the expectation: an inspection collected under another
// one is stale (the schema's promise: inspect again when `expect` changes).
[[nodiscard]] std::string expect_key(const HardwareExpectation& expect);
[[nodiscard]] bool has_expectation(const HardwareExpectation& expect);

struct ExpectationCheck {
    std::vector<std::string> mismatches; // "expect.cpus: 8, inspected 4"
    std::vector<std::string> unchecked;  // "expect.disks: not checkable (...)"
    std::vector<std::string> matched;    // "cpus 8 >= 8"

    [[nodiscard]] bool ok() const { return mismatches.empty(); }
    // "expect.cpus: 8, inspected 4; expect.memoryMiB: 16000, inspected 8192"
    [[nodiscard]] std::string mismatch_text() const;
    // One line for an event or a log: matched and not-checkable fields.
    [[nodiscard]] std::string match_text() const;
};

[[nodiscard]] ExpectationCheck check_expectation(const HardwareExpectation& expect, const InspectedHardware& hardware);

// "8 CPUs, 16384 MiB, 2 disks, x86_64 (from inventory)"
[[nodiscard]] std::string describe(const InspectedHardware& hardware);

// For node-get: the facts, and the check against `expect`.
[[nodiscard]] nlohmann::json inspection_json(const InspectedHardware& hardware, const HardwareExpectation& expect);

} // namespace metalsync
