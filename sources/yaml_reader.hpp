#pragma once

// Typed reading of yaml-cpp nodes with exact error positions. Scalars are
// resolved with the YAML 1.2 core schema (what editors' YAML language servers
// use): `yes`, `on` and `aa:bb:cc:00:11:22` are strings, never booleans or
// sexagesimal integers.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "sources/diagnostic.hpp"

namespace metalsync {

enum class YamlType { null, boolean, integer, floating, string, sequence, mapping };

[[nodiscard]] const char* describe(YamlType type);
[[nodiscard]] YamlType yaml_type(const YAML::Node& node);

// Limits that keep hostile input bounded in time and memory.
struct YamlLimits {
    std::size_t max_file_bytes = 16U * 1024U * 1024U;
    std::size_t max_nodes_per_document = 200000;  // after alias expansion
    int max_depth = 64;
};

class YamlReader {
public:
    YamlReader(std::string file, Diagnostics& diagnostics, YamlLimits limits = {})
        : m_file(std::move(file)), m_diagnostics(diagnostics), m_limits(limits)
    {
    }

    void error(const YAML::Node& at, const std::string& field, std::string reason);
    void error_at(const YAML::Mark& at, const std::string& field, std::string reason);

    // Each returns nullopt (having recorded an error) when the node has the
    // wrong type or fails the check. `field` is the dotted path for errors.
    std::optional<std::string> string(const YAML::Node& node, const std::string& field);
    std::optional<bool> boolean(const YAML::Node& node, const std::string& field);
    std::optional<std::int64_t> integer(const YAML::Node& node, const std::string& field, std::int64_t min,
                                        std::int64_t max);
    std::optional<double> number(const YAML::Node& node, const std::string& field);
    std::optional<std::string> matching(const YAML::Node& node, const std::string& field, std::string_view what,
                                        bool (*check)(std::string_view));
    std::optional<std::string> one_of(const YAML::Node& node, const std::string& field,
                                      std::initializer_list<std::string_view> allowed);

    // True when `node` is a mapping without duplicate keys; records errors
    // for each key not in `allowed` (unless allowed is empty = any key).
    bool mapping(const YAML::Node& node, const std::string& field, const std::set<std::string>& allowed);
    bool sequence(const YAML::Node& node, const std::string& field, std::size_t max_items);
    // A mapping of string to string (labels, annotations, interfaces values).
    std::optional<std::map<std::string, std::string>> string_map(const YAML::Node& node, const std::string& field);

    // Any YAML value as JSON (properties, metaData, Kubernetes objects), with
    // the node budget and depth limits applied. nullopt (error recorded) when
    // a limit is hit or a key is duplicated.
    std::optional<nlohmann::json> to_json(const YAML::Node& node, const std::string& field);

    [[nodiscard]] const std::string& file() const { return m_file; }

private:
    std::optional<nlohmann::json> to_json_bounded(const YAML::Node& node, const std::string& field, int depth,
                                                  std::size_t& budget);

    std::string m_file;
    Diagnostics& m_diagnostics;
    YamlLimits m_limits;
};

[[nodiscard]] std::string join_field(const std::string& parent, const std::string& key);
[[nodiscard]] std::string index_field(const std::string& parent, std::size_t index);

// Format checks shared by the loader and its tests.
[[nodiscard]] bool is_mac(std::string_view s);
[[nodiscard]] bool is_host(std::string_view s);  // IPv4, IPv6 or DNS name
[[nodiscard]] bool is_url(std::string_view s);   // http, https or file
[[nodiscard]] bool is_checksum(std::string_view s);
[[nodiscard]] bool is_object_name(std::string_view s);
[[nodiscard]] bool is_credentials_name(std::string_view s);
[[nodiscard]] bool is_valid_utf8(std::string_view s, std::size_t* bad_offset = nullptr);
// Length of the valid UTF-8 sequence starting at s[pos] (1 for ASCII), or 0
// when the bytes there are not one (stray continuation, overlong, surrogate,
// beyond U+10FFFF, truncated). pos < s.size().
[[nodiscard]] std::size_t utf8_sequence_length(std::string_view s, std::size_t pos);

} // namespace metalsync
