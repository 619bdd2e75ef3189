#pragma once

// One file of the user's repository → its typed documents, or diagnostics.
// A pure function of (path, content): the revision loader caches its result
// by the file's blob id, so a one-file commit re-parses one file.

#include <string>
#include <string_view>
#include <vector>

#include "sources/desired_state.hpp"
#include "sources/diagnostic.hpp"
#include "sources/yaml_reader.hpp"

namespace metalsync {

struct Position {
    int line = 0;  // 1-based
    int column = 0;
};

// A Node as written, before its class is merged in.
struct NodeDocument {
    std::string name;
    std::map<std::string, std::string> labels;
    std::string class_name;
    std::string bmc_address;
    std::string bmc_system_id;
    std::vector<PortSpec> ports;
    NodeFields fields;
    SourceRef source;
    Position name_at;
    Position class_at;
    Position bmc_at;
    Position address_at;
    std::vector<Position> mac_at;  // one per port
    // The document has errors of its own: kept only so that the checks across
    // documents (names, MACs, BMC addresses) still see it and one pass reports
    // everything; its revision is rejected anyway.
    bool incomplete = false;
};

struct NodeClassDocument {
    NodeClass node_class;
    Position name_at;
};

struct PolicyDocument {
    Policy policy;
    Position name_at;
};

struct KubeDocument {
    KubeObject object;
    Position name_at;
};

struct ParsedFile {
    std::vector<NodeDocument> nodes;
    std::vector<NodeClassDocument> classes;
    std::vector<PolicyDocument> policies;
    std::vector<KubeDocument> kube_objects;
    Diagnostics diagnostics;  // non-empty: the file (and so the revision) is invalid
};

[[nodiscard]] ParsedFile parse_file(const std::string& path, std::string_view content, const YamlLimits& limits = {});

} // namespace metalsync
