#pragma once

// The typed desired state of one Git revision: what the user's YAML asks for,
// after validation and after NodeClass defaults are merged into each Node.
// Pure data: no libgit2, libcurl or SQLite here.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace metalsync {

inline constexpr const char* k_api_group = "metalsync.dev";
inline constexpr const char* k_api_version = "metalsync.dev/v1alpha1";

enum class ProvisionGoal { manageable, available, active };
enum class PowerGoal { on, off };

[[nodiscard]] const char* to_string(ProvisionGoal goal);
[[nodiscard]] const char* to_string(PowerGoal goal);

// The BMC port when the spec gives none: IPMI's 623 for the ipmi driver and
// for fake-hardware (whose only BMC fields are ipmitool's), else HTTPS's 443
// (redfish, idrac, irmc). One rule for the planner's driver_info and the
// loader's one-BMC-per-node check.
[[nodiscard]] int default_bmc_port(std::string_view driver);

// Where a document came from, for error messages, events and annotations.
struct SourceRef {
    std::string file;  // relative to the repository's configured root
    int line = 0;      // 1-based line of the document's first key
};

struct BmcSpec {
    std::string driver;               // ipmi | redfish | idrac | ilo | irmc | fake-hardware
    std::string address;              // IP address or host name; empty only for fake-hardware
    std::optional<int> port;          // 1..65535
    std::string credentials;          // a plain file name in the credentials directory
    std::string system_id;            // redfish system path, e.g. /redfish/v1/Systems/1
    std::optional<bool> verify_ca;    // redfish/idrac TLS verification
};

struct PortSpec {
    std::string mac;   // normalised lower-case aa:bb:cc:dd:ee:ff
    bool pxe = true;
    std::string physical_network;
};

struct ImageSpec {
    std::string source;    // http(s):// or file:// URL, or a Glance image name
    std::string checksum;  // `sha256:<hex>`, `sha512:<hex>`, `md5:<hex>` or an http(s) URL of a checksum file
    std::string kernel;    // URL, for partition images
    std::string ramdisk;   // URL, for partition images
    std::optional<int> root_gib;
};

struct ConfigDriveSpec {
    std::optional<std::string> user_data;
    nlohmann::json meta_data = nlohmann::json::object();
    nlohmann::json network_data;  // null when absent
};

struct CleanStep {
    std::string interface;  // deploy | bios | raid | management | power
    std::string step;
    nlohmann::json args = nlohmann::json::object();
};

struct HardwareExpectation {
    std::optional<int> cpus;
    std::optional<std::int64_t> memory_mib;
    std::optional<int> disks;
    std::optional<std::string> cpu_arch;
};

// The fields a Node and a NodeClass may both set. Every field is optional so
// that a class can be merged under a node; `resolve` fills the defaults.
struct NodeFields {
    std::optional<std::string> driver;
    std::optional<int> bmc_port;
    std::optional<std::string> credentials;
    std::optional<bool> verify_ca;
    std::map<std::string, std::string> interfaces;  // boot, deploy, power, ... -> Ironic interface name
    std::optional<bool> automated_clean;
    nlohmann::json properties = nlohmann::json::object();
    std::optional<std::string> resource_class;
    std::optional<bool> inspect;
    HardwareExpectation expect;
    std::optional<ProvisionGoal> provision_state;
    std::optional<ImageSpec> image;
    std::optional<ConfigDriveSpec> config_drive;
    std::optional<std::vector<CleanStep>> clean_steps;
    std::optional<bool> maintenance;
    std::optional<std::string> maintenance_reason;
    std::optional<PowerGoal> power;
};

struct NodeClass {
    std::string name;
    NodeFields fields;
    SourceRef source;
};

// A fully resolved node: class defaults merged, defaults applied.
struct NodeSpec {
    std::string name;
    std::map<std::string, std::string> labels;
    std::string class_name;  // empty when the node names no class
    BmcSpec bmc;
    std::map<std::string, std::string> interfaces;
    bool automated_clean = true;
    std::vector<PortSpec> ports;
    nlohmann::json properties = nlohmann::json::object();
    std::string resource_class;
    bool inspect = false;
    HardwareExpectation expect;
    ProvisionGoal provision_state = ProvisionGoal::available;
    std::optional<ImageSpec> image;
    std::optional<ConfigDriveSpec> config_drive;
    std::vector<CleanStep> clean_steps;
    bool maintenance = false;
    std::string maintenance_reason;
    std::optional<PowerGoal> power;
    SourceRef source;
};

struct Limits {
    std::optional<int> max_provisioning;     // nodes in Ironic busy states at once
    std::optional<double> ironic_qps;
    std::optional<double> kubernetes_qps;
    std::optional<int> per_bmc;              // in-flight actions per BMC address
};

struct Policy {
    std::string name;
    bool prune = false;                      // delete Ironic nodes / Kubernetes objects removed from Git
    int mass_deletion_max_percent = 20;      // share of nodes one revision may undeploy or delete
    bool mass_deletion_allowed = false;      // lift the guard for this revision
    int max_retries = 5;                     // attempts at a failing step before a node is reported failed
    Limits limits;
    SourceRef source;
};

// Any document outside metalsync.dev: kept verbatim for the Kubernetes adapter.
struct KubeObject {
    std::string api_version;
    std::string kind;
    std::string name;
    std::string namespace_;  // empty when the document sets none
    nlohmann::json body;
    SourceRef source;
};

struct DesiredState {
    std::string revision;                        // commit id, or empty for a work tree
    std::map<std::string, NodeSpec> nodes;       // by name
    std::map<std::string, NodeClass> classes;    // by name
    Policy policy;                               // defaults when the repo has none
    bool has_policy = false;
    std::vector<KubeObject> kube_objects;        // in file order
};

// A stable content hash of a node's spec (credentials by name only), used to
// notice spec changes (retry counters reset, validation errors retried).
[[nodiscard]] std::string spec_hash(const NodeSpec& node);

[[nodiscard]] nlohmann::json to_json(const NodeSpec& node);
[[nodiscard]] nlohmann::json to_json(const Policy& policy);

} // namespace metalsync
