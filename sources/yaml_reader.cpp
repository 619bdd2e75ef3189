#include "sources/yaml_reader.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <unordered_set>

namespace metalsync {

namespace {

bool is_plain(const YAML::Node& node)
{
    // yaml-cpp tags plain scalars "?" and quoted ones "!"; an explicit tag such
    // as !!str is kept as written.
    return node.Tag() == "?" || node.Tag().empty();
}

// Hand-written YAML 1.2 core-schema resolution: this runs for every scalar
// of every document, and std::regex would dominate a 10,000-node cold load.
bool is_null_scalar(const std::string& s)
{
    return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

bool is_bool_scalar(const std::string& s)
{
    return s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE";
}

bool all_of_set(std::string_view s, std::string_view set)
{
    return !s.empty() && s.find_first_not_of(set) == std::string_view::npos;
}

bool is_int_scalar(const std::string& s)
{
    std::string_view v = s;
    if (v.starts_with("0o")) {
        return all_of_set(v.substr(2), "01234567");
    }
    if (v.starts_with("0x")) {
        return all_of_set(v.substr(2), "0123456789abcdefABCDEF");
    }
    if (!v.empty() && (v[0] == '-' || v[0] == '+')) {
        v.remove_prefix(1);
    }
    return all_of_set(v, "0123456789");
}

bool is_float_scalar(const std::string& s)
{
    std::string_view v = s;
    if (v == ".nan" || v == ".NaN" || v == ".NAN") {
        return true;
    }
    if (!v.empty() && (v[0] == '-' || v[0] == '+')) {
        v.remove_prefix(1);
    }
    if (v == ".inf" || v == ".Inf" || v == ".INF") {
        return true;
    }
    // [0-9]+(\.[0-9]*)? | \.[0-9]+ , then optional exponent
    std::size_t i = 0;
    std::size_t int_digits = 0;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])) != 0) {
        ++i;
        ++int_digits;
    }
    std::size_t frac_digits = 0;
    if (i < v.size() && v[i] == '.') {
        ++i;
        while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])) != 0) {
            ++i;
            ++frac_digits;
        }
        if (int_digits == 0 && frac_digits == 0) {
            return false;
        }
    } else if (int_digits == 0) {
        return false;
    }
    if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
        ++i;
        if (i < v.size() && (v[i] == '-' || v[i] == '+')) {
            ++i;
        }
        std::size_t exp_digits = 0;
        while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])) != 0) {
            ++i;
            ++exp_digits;
        }
        if (exp_digits == 0) {
            return false;
        }
    }
    return i == v.size();
}

std::string type_name_of(const YAML::Node& node) { return describe(yaml_type(node)); }

// The keys seen so far in one mapping, for duplicate detection without a
// std::set<std::string> node and string copy per key: a linear scan over the
// first few keys (the usual mapping has fewer than 16), a hash set beyond, so
// a hostile mapping with 100,000 keys stays linear. The views refer into the
// document, which outlives the check.
class KeySet {
public:
    // False when the key was already seen.
    bool insert(std::string_view key)
    {
        if (m_large.empty()) {
            if (std::find(m_small.begin(), m_small.begin() + static_cast<long>(m_count), key) !=
                m_small.begin() + static_cast<long>(m_count)) {
                return false;
            }
            if (m_count < m_small.size()) {
                m_small[m_count++] = key;
                return true;
            }
            m_large.insert(m_small.begin(), m_small.end());
        }
        return m_large.insert(key).second;
    }

private:
    std::array<std::string_view, 16> m_small;
    std::size_t m_count = 0;
    std::unordered_set<std::string_view> m_large;
};

std::optional<std::int64_t> parse_int(const std::string& s)
{
    std::int64_t value = 0;
    const char* begin = s.data();
    const char* end = s.data() + s.size();
    int base = 10;
    bool negative = false;
    if (s.rfind("0o", 0) == 0) {
        begin += 2;
        base = 8;
    } else if (s.rfind("0x", 0) == 0) {
        begin += 2;
        base = 16;
    } else if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        ++begin;
    }
    auto [ptr, ec] = std::from_chars(begin, end, value, base);
    if (ec != std::errc() || ptr != end) {
        return std::nullopt;  // out of range
    }
    return negative ? -value : value;
}

} // namespace

const char* describe(YamlType type)
{
    switch (type) {
    case YamlType::null: return "null";
    case YamlType::boolean: return "a boolean";
    case YamlType::integer: return "an integer";
    case YamlType::floating: return "a number";
    case YamlType::string: return "a string";
    case YamlType::sequence: return "a list";
    case YamlType::mapping: return "a mapping";
    }
    return "unknown";
}

YamlType yaml_type(const YAML::Node& node)
{
    if (!node.IsDefined() || node.IsNull()) {
        return YamlType::null;
    }
    if (node.IsSequence()) {
        return YamlType::sequence;
    }
    if (node.IsMap()) {
        return YamlType::mapping;
    }
    const std::string& s = node.Scalar();
    if (!is_plain(node)) {
        return YamlType::string;
    }
    if (is_null_scalar(s)) {
        return YamlType::null;
    }
    if (is_bool_scalar(s)) {
        return YamlType::boolean;
    }
    if (is_int_scalar(s)) {
        return YamlType::integer;
    }
    if (is_float_scalar(s)) {
        return YamlType::floating;
    }
    return YamlType::string;
}

void YamlReader::error_at(const YAML::Mark& at, const std::string& field, std::string reason)
{
    m_diagnostics.push_back(Diagnostic{m_file, at.line + 1, at.column + 1, field, std::move(reason)});
}

void YamlReader::error(const YAML::Node& at, const std::string& field, std::string reason)
{
    YAML::Mark mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
    if (mark.is_null()) {
        mark.line = 0;
        mark.column = 0;
    }
    error_at(mark, field, std::move(reason));
}

std::optional<std::string> YamlReader::string(const YAML::Node& node, const std::string& field)
{
    if (yaml_type(node) != YamlType::string) {
        error(node, field, "expected a string, got " + type_name_of(node));
        return std::nullopt;
    }
    return node.Scalar();
}

std::optional<bool> YamlReader::boolean(const YAML::Node& node, const std::string& field)
{
    if (yaml_type(node) != YamlType::boolean) {
        error(node, field, "expected a boolean (true or false), got " + type_name_of(node));
        return std::nullopt;
    }
    const auto& s = node.Scalar();
    return s[0] == 't' || s[0] == 'T';
}

std::optional<std::int64_t> YamlReader::integer(const YAML::Node& node, const std::string& field, std::int64_t min,
                                                std::int64_t max)
{
    if (yaml_type(node) != YamlType::integer) {
        error(node, field, "expected an integer, got " + type_name_of(node));
        return std::nullopt;
    }
    auto value = parse_int(node.Scalar());
    if (!value || *value < min || *value > max) {
        error(node, field,
              "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + node.Scalar());
        return std::nullopt;
    }
    return value;
}

std::optional<double> YamlReader::number(const YAML::Node& node, const std::string& field)
{
    auto type = yaml_type(node);
    if (type != YamlType::integer && type != YamlType::floating) {
        error(node, field, "expected a number, got " + type_name_of(node));
        return std::nullopt;
    }
    const auto& s = node.Scalar();
    if (type == YamlType::integer) {
        auto value = parse_int(s);
        if (!value) {
            error(node, field, "number out of range: " + s);
            return std::nullopt;
        }
        return static_cast<double>(*value);
    }
    if (s.find("inf") != std::string::npos || s.find("Inf") != std::string::npos ||
        s.find("INF") != std::string::npos || s.find("nan") != std::string::npos ||
        s.find("NaN") != std::string::npos || s.find("NAN") != std::string::npos) {
        error(node, field, "must be a finite number, got " + s);
        return std::nullopt;
    }
    return std::strtod(s.c_str(), nullptr);
}

std::optional<std::string> YamlReader::matching(const YAML::Node& node, const std::string& field,
                                                std::string_view what, bool (*check)(std::string_view))
{
    auto s = string(node, field);
    if (!s) {
        return std::nullopt;
    }
    if (!check(*s)) {
        error(node, field, "'" + *s + "' is not " + std::string(what));
        return std::nullopt;
    }
    return s;
}

std::optional<std::string> YamlReader::one_of(const YAML::Node& node, const std::string& field,
                                              std::initializer_list<std::string_view> allowed)
{
    auto s = string(node, field);
    if (!s) {
        return std::nullopt;
    }
    std::string list;
    for (auto a : allowed) {
        if (a == *s) {
            return s;
        }
        list += (list.empty() ? "" : ", ") + std::string(a);
    }
    error(node, field, "'" + *s + "' is not one of: " + list);
    return std::nullopt;
}

bool YamlReader::mapping(const YAML::Node& node, const std::string& field, const std::set<std::string>& allowed)
{
    if (!node.IsMap()) {
        error(node, field, "expected a mapping, got " + type_name_of(node));
        return false;
    }
    bool ok = true;
    KeySet seen;
    for (const auto& kv : node) {
        const YAML::Node& key = kv.first;
        if (!key.IsScalar()) {
            error(key, field, "mapping keys must be strings");
            ok = false;
            continue;
        }
        const std::string& name = key.Scalar();
        if (!seen.insert(name)) {
            error(key, join_field(field, name), "duplicate key '" + name + "'");
            ok = false;
            continue;
        }
        if (!allowed.empty() && !allowed.contains(name)) {
            std::string list;
            for (const auto& a : allowed) {
                list += (list.empty() ? "" : ", ") + a;
            }
            error(key, join_field(field, name), "unknown field (known: " + list + ")");
            ok = false;
        }
    }
    return ok;
}

bool YamlReader::sequence(const YAML::Node& node, const std::string& field, std::size_t max_items)
{
    if (!node.IsSequence()) {
        error(node, field, "expected a list, got " + type_name_of(node));
        return false;
    }
    if (node.size() > max_items) {
        error(node, field, "at most " + std::to_string(max_items) + " items, got " + std::to_string(node.size()));
        return false;
    }
    return true;
}

std::optional<std::map<std::string, std::string>> YamlReader::string_map(const YAML::Node& node,
                                                                         const std::string& field)
{
    if (!mapping(node, field, {})) {
        return std::nullopt;
    }
    std::map<std::string, std::string> out;
    bool ok = true;
    for (const auto& kv : node) {
        auto value = string(kv.second, join_field(field, kv.first.Scalar()));
        if (value) {
            out.insert_or_assign(kv.first.Scalar(), std::move(*value));
        } else {
            ok = false;
        }
    }
    return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<nlohmann::json> YamlReader::to_json(const YAML::Node& node, const std::string& field)
{
    std::size_t budget = m_limits.max_nodes_per_document;
    return to_json_bounded(node, field, 0, budget);
}

std::optional<nlohmann::json> YamlReader::to_json_bounded(const YAML::Node& node, const std::string& field,
                                                          int depth, std::size_t& budget)
{
    if (budget == 0) {
        error(node, field,
              "document expands to more than " + std::to_string(m_limits.max_nodes_per_document) +
                  " values (an alias bomb?)");
        return std::nullopt;
    }
    --budget;
    if (depth > m_limits.max_depth) {
        error(node, field, "nested more than " + std::to_string(m_limits.max_depth) + " levels deep");
        return std::nullopt;
    }
    switch (yaml_type(node)) {
    case YamlType::null: return nlohmann::json(nullptr);
    case YamlType::boolean: return nlohmann::json(node.Scalar()[0] == 't' || node.Scalar()[0] == 'T');
    case YamlType::integer: {
        auto value = parse_int(node.Scalar());
        if (!value) {
            error(node, field, "integer out of range: " + node.Scalar());
            return std::nullopt;
        }
        return nlohmann::json(*value);
    }
    case YamlType::floating: {
        auto value = number(node, field);
        if (!value) {
            return std::nullopt;
        }
        return nlohmann::json(*value);
    }
    case YamlType::string: return nlohmann::json(node.Scalar());
    case YamlType::sequence: {
        auto out = nlohmann::json::array();
        std::size_t i = 0;
        for (const auto& item : node) {
            auto value = to_json_bounded(item, index_field(field, i++), depth + 1, budget);
            if (!value) {
                return std::nullopt;
            }
            out.push_back(std::move(*value));
        }
        return out;
    }
    case YamlType::mapping: {
        if (!mapping(node, field, {})) {
            return std::nullopt;
        }
        auto out = nlohmann::json::object();
        for (const auto& kv : node) {
            const std::string& key = kv.first.Scalar();
            auto value = to_json_bounded(kv.second, join_field(field, key), depth + 1, budget);
            if (!value) {
                return std::nullopt;
            }
            out[key] = std::move(*value);
        }
        return out;
    }
    }
    return std::nullopt;
}

std::string join_field(const std::string& parent, const std::string& key)
{
    return parent.empty() ? key : parent + "." + key;
}

std::string index_field(const std::string& parent, std::size_t index)
{
    return parent + "[" + std::to_string(index) + "]";
}

bool is_mac(std::string_view s)
{
    if (s.size() != 17) {
        return false;
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i % 3 == 2) {
            if (s[i] != ':') {
                return false;
            }
        } else if (std::isxdigit(static_cast<unsigned char>(s[i])) == 0) {
            return false;
        }
    }
    return true;
}

static bool is_ipv4(std::string_view s)
{
    int parts = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t j = s.find('.', i);
        if (j == std::string_view::npos) {
            j = s.size();
        }
        auto part = s.substr(i, j - i);
        if (part.empty() || part.size() > 3) {
            return false;
        }
        int value = 0;
        for (char c : part) {
            if (c < '0' || c > '9') {
                return false;
            }
            value = value * 10 + (c - '0');
        }
        if (value > 255) {
            return false;
        }
        ++parts;
        i = j + 1;
    }
    return parts == 4;
}

static bool looks_like_ipv4(std::string_view s)
{
    return !s.empty() && s.find_first_not_of("0123456789.") == std::string_view::npos;
}

// The format checks below were std::regex matches; each is hand-written with
// exactly the regex's semantics (quoted above it), because std::regex cost ~8%
// of a 10,000-node cold load and recurses per character on long input.
// Character classes are ASCII, as the regexes' were in the "C" locale.
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_alnum(char c) { return is_digit(c) || is_lower(c) || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_lower_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }
// \s in the "C" locale
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// [^\s]+
bool is_non_space_run(std::string_view s)
{
    return !s.empty() && std::none_of(s.begin(), s.end(), is_space);
}

bool is_lower_hex_of_size(std::string_view s, std::size_t size)
{
    return s.size() == size && std::all_of(s.begin(), s.end(), is_lower_hex);
}

// https?://[^\s]+
bool is_http_url(std::string_view s)
{
    return (s.starts_with("http://") && is_non_space_run(s.substr(7))) ||
           (s.starts_with("https://") && is_non_space_run(s.substr(8)));
}

} // namespace

static bool is_ipv6(std::string_view s)
{
    // [0-9A-Fa-f:]*:[0-9A-Fa-f:.]*  — hex digits and ':' throughout, at least
    // one ':', and '.' only after the first ':'.
    const auto first_colon = s.find(':');
    if (first_colon == std::string_view::npos) {
        return false;
    }
    for (std::size_t k = 0; k < s.size(); ++k) {
        const char c = s[k];
        if (!is_hex(c) && c != ':' && !(c == '.' && k > first_colon)) {
            return false;
        }
    }
    // At most one "::", at most 8 groups of at most 4 hex digits.
    auto first = s.find("::");
    if (first != std::string_view::npos && s.find("::", first + 1) != std::string_view::npos) {
        return false;
    }
    int groups = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t j = s.find(':', i);
        if (j == std::string_view::npos) {
            j = s.size();
        }
        auto group = s.substr(i, j - i);
        if (group.find('.') != std::string_view::npos) {
            if (!is_ipv4(group) || j != s.size()) {
                return false;
            }
            groups += 2;
        } else if (!group.empty()) {
            if (group.size() > 4) {
                return false;
            }
            ++groups;
        }
        i = j + 1;
    }
    return groups <= 8 && (groups == 8 || first != std::string_view::npos);
}

static bool is_dns_name(std::string_view s)
{
    // At most 253 characters matching
    // [A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*
    // i.e. '.'-separated labels of 1 to 63 letters, digits and '-', neither
    // starting nor ending with '-'.
    if (s.empty() || s.size() > 253) {
        return false;
    }
    std::size_t i = 0;
    while (true) {
        std::size_t j = s.find('.', i);
        if (j == std::string_view::npos) {
            j = s.size();
        }
        auto label = s.substr(i, j - i);
        if (label.empty() || label.size() > 63 || !is_alnum(label.front()) || !is_alnum(label.back()) ||
            !std::all_of(label.begin(), label.end(), [](char c) { return is_alnum(c) || c == '-'; })) {
            return false;
        }
        if (j == s.size()) {
            return true;
        }
        i = j + 1;
    }
}

bool is_host(std::string_view s)
{
    if (looks_like_ipv4(s)) {
        return is_ipv4(s);
    }
    if (s.find(':') != std::string_view::npos) {
        return is_ipv6(s);
    }
    return is_dns_name(s);
}

bool is_url(std::string_view s)
{
    // (https?|file)://[^\s]+
    return is_http_url(s) || (s.starts_with("file://") && is_non_space_run(s.substr(7)));
}

bool is_checksum(std::string_view s)
{
    // md5:[0-9a-f]{32}|sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|https?://[^\s]+
    if (s.starts_with("md5:")) {
        return is_lower_hex_of_size(s.substr(4), 32);
    }
    if (s.starts_with("sha256:")) {
        return is_lower_hex_of_size(s.substr(7), 64);
    }
    if (s.starts_with("sha512:")) {
        return is_lower_hex_of_size(s.substr(7), 128);
    }
    return is_http_url(s);
}

bool is_object_name(std::string_view s)
{
    // [a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?
    auto name_char = [](char c) { return is_lower(c) || is_digit(c); };
    return !s.empty() && s.size() <= 63 && name_char(s.front()) && name_char(s.back()) &&
           std::all_of(s.begin(), s.end(), [&](char c) { return name_char(c) || c == '.' || c == '-'; });
}

bool is_credentials_name(std::string_view s)
{
    // [A-Za-z0-9_][A-Za-z0-9._-]{0,127}, and no ".."
    return !s.empty() && s.size() <= 128 && (is_alnum(s.front()) || s.front() == '_') &&
           std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; }) &&
           s.find("..") == std::string_view::npos;
}

std::size_t utf8_sequence_length(std::string_view s, std::size_t pos)
{
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const unsigned char lead = byte(pos);
    if (lead < 0x80) return 1;
    std::size_t len = 0;
    unsigned char lo = 0x80;  // bounds of the second byte: they exclude overlongs,
    unsigned char hi = 0xBF;  // surrogates and code points past U+10FFFF
    if (lead >= 0xC2 && lead <= 0xDF) {
        len = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        len = 3;
        if (lead == 0xE0) lo = 0xA0;
        if (lead == 0xED) hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        len = 4;
        if (lead == 0xF0) lo = 0x90;
        if (lead == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (pos + len > s.size()) return 0;
    if (byte(pos + 1) < lo || byte(pos + 1) > hi) return 0;
    for (std::size_t i = 2; i < len; ++i) {
        if (byte(pos + i) < 0x80 || byte(pos + i) > 0xBF) return 0;
    }
    return len;
}

bool is_valid_utf8(std::string_view s, std::size_t* bad_offset)
{
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = utf8_sequence_length(s, i);
        if (len == 0) {
            if (bad_offset != nullptr) *bad_offset = i;
            return false;
        }
        i += len;
    }
    return true;
}

} // namespace metalsync
