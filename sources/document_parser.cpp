#include "sources/document_parser.hpp"

#include <algorithm>
#include <cctype>
#include <span>
#include <spanstream>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

namespace metalsync {

namespace {

// yaml-cpp 0.7 never consumes a ',' where a document's node should start
// ("- a\n," or "{a: 1},", found by fuzz_yaml_loader): YAML::LoadAll then adds
// an empty document at the same place, again and again, until memory runs
// out. A first pass over the parser's events, building no nodes, throws at
// the second document that starts where the previous one did.
class StalledDocumentGuard : public YAML::EventHandler {
public:
    explicit StalledDocumentGuard(std::string_view content) : m_content(content) {}

    void OnDocumentStart(const YAML::Mark& mark) override
    {
        if (m_started && mark.pos == m_last.pos) {
            bool comma = mark.pos >= 0 && static_cast<std::size_t>(mark.pos) < m_content.size() &&
                         m_content[static_cast<std::size_t>(mark.pos)] == ',';
            throw YAML::ParserException(mark, comma ? "unexpected ','" : "the parser cannot go on from here");
        }
        m_started = true;
        m_last = mark;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override
    {
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}

private:
    std::string_view m_content;
    YAML::Mark m_last;
    bool m_started = false;
};

// Whether yaml-cpp could meet a ',' token where a document's node starts:
// only a ',' at the start of a token can be one (inside a plain scalar it is
// text). Conservative: a ',' after whitespace, a line start, an indicator, a
// quote or a flow bracket, or after an anchor, alias or tag name, answers
// true; a false "true" costs one more pass over the file, never a hang. Most
// files (commas only between flow entries like `[a, b]`) answer false and are
// parsed once.
bool may_stall_on_comma(std::string_view text)
{
    // Characters that continue a plain scalar or a name without starting a token.
    auto name_char = [](unsigned char c) {
        return std::isalnum(c) != 0 || c >= 0x80 || std::string_view("_-./)%+=~@$^;").find(static_cast<char>(c)) !=
                                                        std::string_view::npos;
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != ',') continue;
        if (i == 0 || !name_char(static_cast<unsigned char>(text[i - 1]))) {
            return true;  // whitespace, line start, indicators, quotes, brackets, another ','
        }
        std::size_t k = i;
        while (k > 0 && name_char(static_cast<unsigned char>(text[k - 1]))) --k;
        if (k == 0 || text[k - 1] == '&' || text[k - 1] == '*' || text[k - 1] == '!') return true;
    }
    return false;
}

Position position_of(const YAML::Node& node)
{
    const auto mark = node.Mark();
    if (mark.is_null()) {
        return {1, 1};
    }
    return {mark.line + 1, mark.column + 1};
}

std::size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<std::size_t> prev(b.size() + 1);
    std::vector<std::size_t> cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

const std::set<std::string> k_interface_keys = {"bios",    "boot",    "console", "deploy", "inspect", "management",
                                                "network", "power",   "raid",    "rescue", "storage", "vendor"};

bool is_interface_name(std::string_view s)
{
    if (s.empty() || !(std::islower(static_cast<unsigned char>(s[0])) || std::isdigit(static_cast<unsigned char>(s[0])))) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' ||
               c == '-';
    });
}

bool is_resource_class(std::string_view s)
{
    return !s.empty() && s.size() <= 80 && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    });
}

bool is_step_name(std::string_view s)
{
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_';
    });
}

bool is_system_id(std::string_view s) { return !s.empty() && s[0] == '/'; }

bool is_plain_credentials_name(std::string_view s) { return is_credentials_name(s); }

// The entries of one mapping, read in one pass, looked up by key. yaml-cpp's
// operator[] decodes every key it compares into a std::string and, for an
// absent key, formats an error message through a std::stringstream (~4% of a
// cold load); the non-const operator[] even inserts the absent key. As with
// operator[], the first entry with a key wins and non-scalar keys never match.
class Entries {
public:
    explicit Entries(const YAML::Node& map)
    {
        if (!map.IsMap()) {
            return;
        }
        for (const auto& kv : map) {
            if (kv.first.IsScalar()) {
                // Scalar() refers into the document, which outlives this object.
                m_entries.emplace_back(kv.first.Scalar(), kv.second);
            }
        }
    }

    // nullptr when the key is absent.
    [[nodiscard]] const YAML::Node* find(std::string_view key) const
    {
        for (const auto& [k, v] : m_entries) {
            if (k == key) {
                return &v;
            }
        }
        return nullptr;
    }

private:
    std::vector<std::pair<std::string_view, YAML::Node>> m_entries;
};

// The keys each mapping allows, built once rather than per document.
const std::set<std::string> k_top_keys = {"apiVersion", "kind", "metadata", "spec"};
const std::set<std::string> k_metadata_keys = {"name", "labels", "annotations"};
const std::set<std::string> k_node_spec_keys = {
    "class",      "bmc",   "interfaces",     "automatedClean", "ports",       "properties",        "resourceClass",
    "inspect",    "expect", "provisionState", "image",          "configDrive", "maintenance",       "maintenanceReason",
    "power",      "cleanSteps"};
const std::set<std::string> k_class_spec_keys = {
    "bmc",   "interfaces",     "automatedClean", "properties",  "resourceClass", "inspect",           "expect",
    "provisionState", "image", "configDrive",    "maintenance", "maintenanceReason", "power", "cleanSteps"};
const std::set<std::string> k_port_keys = {"mac", "pxe", "physicalNetwork"};
const std::set<std::string> k_class_bmc_keys = {"driver", "port", "credentials", "verifyCA"};
const std::set<std::string> k_node_bmc_keys = {"driver", "port", "credentials", "verifyCA", "address", "systemId"};
const std::set<std::string> k_expect_keys = {"cpus", "memoryMiB", "disks", "cpuArch"};
const std::set<std::string> k_image_keys = {"source", "checksum", "kernel", "ramdisk", "rootGiB"};
const std::set<std::string> k_config_drive_keys = {"userData", "metaData", "networkData"};
const std::set<std::string> k_clean_step_keys = {"interface", "step", "args"};
const std::set<std::string> k_policy_spec_keys = {"prune", "massDeletion", "maxRetries", "limits"};
const std::set<std::string> k_mass_deletion_keys = {"maxPercent", "allow"};
const std::set<std::string> k_limits_keys = {"maxProvisioning", "ironicQPS", "kubernetesQPS", "perBMC"};

class DocumentParser {
public:
    DocumentParser(const std::string& path, ParsedFile& out, const YamlLimits& limits)
        : m_path(path), m_out(out), m_reader(path, out.diagnostics, limits)
    {
    }

    void parse(const YAML::Node& doc);

private:
    struct Metadata {
        std::string name;
        std::map<std::string, std::string> labels;
        Position name_at;
        bool ok = false;
    };

    Metadata parse_metadata(const YAML::Node& doc, const Entries& top);
    void parse_node(const YAML::Node& doc, const YAML::Node& spec, Metadata meta);
    void parse_node_class(const YAML::Node& doc, const YAML::Node& spec, const Metadata& meta);
    void parse_policy(const YAML::Node& doc, const YAML::Node& spec, const Metadata& meta);
    void parse_kube(const YAML::Node& doc, const Entries& top, const std::string& api_version, const std::string& kind);
    // metalsync's own Cluster API provider kinds: checked here against their
    // CRDs (schemas/crds), with file:line, rather than refused by the API server.
    void check_provider_kind(const YAML::Node& doc, const Entries& top, const std::string& kind);
    void check_machine_spec(const YAML::Node& spec, const std::string& field);
    void parse_fields(const Entries& spec, NodeFields& fields);
    void parse_bmc(const YAML::Node& bmc, bool is_class, NodeFields& fields, NodeDocument* node);
    std::optional<ImageSpec> parse_image(const YAML::Node& image);
    std::optional<ConfigDriveSpec> parse_config_drive(const YAML::Node& drive);
    std::optional<std::vector<CleanStep>> parse_clean_steps(const YAML::Node& steps);
    void parse_expect(const YAML::Node& expect, HardwareExpectation& out);

    void missing(const YAML::Node& parent, const std::string& field)
    {
        m_reader.error(parent, field, "required field is missing");
    }

    const std::string& m_path;
    ParsedFile& m_out;
    YamlReader m_reader;
};

void DocumentParser::parse(const YAML::Node& doc)
{
    if (!doc.IsMap()) {
        m_reader.error(doc, "", std::string("a document must be a mapping, got ") + describe(yaml_type(doc)));
        return;
    }
    const Entries top(doc);
    const auto* api_node = top.find("apiVersion");
    const auto* kind_node = top.find("kind");
    if (api_node == nullptr) {
        missing(doc, "apiVersion");
    }
    if (kind_node == nullptr) {
        missing(doc, "kind");
    }
    if (api_node == nullptr || kind_node == nullptr) {
        return;
    }
    auto api_version = m_reader.string(*api_node, "apiVersion");
    auto kind = m_reader.string(*kind_node, "kind");
    if (!api_version || !kind) {
        return;
    }
    auto slash = api_version->find('/');
    std::string group = slash == std::string::npos ? "" : api_version->substr(0, slash);
    if (group == k_api_group) {
        if (*api_version != k_api_version) {
            m_reader.error(*api_node, "apiVersion",
                           "unsupported version '" + *api_version + "'; this metalsync reads " + k_api_version);
            return;
        }
        if (*kind != "Node" && *kind != "NodeClass" && *kind != "Policy") {
            m_reader.error(*kind_node, "kind", "unknown kind '" + *kind + "' in " + k_api_version +
                                                   " (known: Node, NodeClass, Policy)");
            return;
        }
        if (!m_reader.mapping(doc, "", k_top_keys)) {
            // Unknown top-level fields are reported; carry on to report the rest.
        }
        auto meta = parse_metadata(doc, top);
        const auto* spec = top.find("spec");
        if (spec == nullptr) {
            missing(doc, "spec");
            return;
        }
        if (*kind == "Node") {
            parse_node(doc, *spec, std::move(meta));
        } else if (*kind == "NodeClass") {
            parse_node_class(doc, *spec, meta);
        } else {
            parse_policy(doc, *spec, meta);
        }
        return;
    }
    std::string typo_group = group.empty() ? *api_version : group;
    auto distance = edit_distance(typo_group, k_api_group);
    if ((distance > 0 && distance <= 2) || typo_group == "metalsync") {
        m_reader.error(*api_node, "apiVersion",
                       "unknown API group '" + typo_group + "'; did you mean " + k_api_version + "?");
        return;
    }
    parse_kube(doc, top, *api_version, *kind);
}

DocumentParser::Metadata DocumentParser::parse_metadata(const YAML::Node& doc, const Entries& top)
{
    Metadata meta;
    const auto* found = top.find("metadata");
    if (found == nullptr) {
        missing(doc, "metadata");
        return meta;
    }
    const YAML::Node& node = *found;
    if (!m_reader.mapping(node, "metadata", k_metadata_keys)) {
        if (!node.IsMap()) {
            return meta;
        }
    }
    const Entries entries(node);
    const auto* name = entries.find("name");
    if (name == nullptr) {
        missing(node, "metadata.name");
        return meta;
    }
    auto value = m_reader.matching(*name, "metadata.name",
                                   "a valid name (lower-case letters, digits, '-' and '.', at most 63 characters)",
                                   is_object_name);
    if (const auto* labels = entries.find("labels")) {
        if (auto map = m_reader.string_map(*labels, "metadata.labels")) {
            meta.labels = std::move(*map);
        }
    }
    if (const auto* annotations = entries.find("annotations")) {
        (void)m_reader.string_map(*annotations, "metadata.annotations");
    }
    if (value) {
        meta.name = std::move(*value);
        meta.name_at = position_of(*name);
        meta.ok = true;
    }
    return meta;
}

void DocumentParser::parse_node(const YAML::Node& doc, const YAML::Node& spec, Metadata meta)
{
    NodeDocument node;
    node.name = std::move(meta.name);
    node.labels = std::move(meta.labels);
    node.name_at = meta.name_at;
    node.source = {m_path, position_of(doc).line};
    const std::size_t errors_before = m_out.diagnostics.size();
    if (!m_reader.mapping(spec, "spec", k_node_spec_keys) && !spec.IsMap()) {
        return;
    }
    const Entries entries(spec);
    if (const auto* cls = entries.find("class")) {
        if (auto value = m_reader.matching(*cls, "spec.class", "a valid NodeClass name", is_object_name)) {
            node.class_name = std::move(*value);
            node.class_at = position_of(*cls);
        }
    }
    if (const auto* bmc = entries.find("bmc")) {
        node.bmc_at = position_of(*bmc);
        parse_bmc(*bmc, false, node.fields, &node);
    } else {
        missing(spec, "spec.bmc");
    }
    if (const auto* ports = entries.find("ports")) {
        if (m_reader.sequence(*ports, "spec.ports", 64)) {
            node.ports.reserve(ports->size());
            node.mac_at.reserve(ports->size());
            std::size_t i = 0;
            for (const auto& port : *ports) {
                auto field = index_field("spec.ports", i++);
                if (!m_reader.mapping(port, field, k_port_keys) && !port.IsMap()) {
                    continue;
                }
                const Entries port_entries(port);
                PortSpec spec_port;
                const auto* mac = port_entries.find("mac");
                if (mac == nullptr) {
                    missing(port, field + ".mac");
                    continue;
                }
                auto value = m_reader.matching(*mac, field + ".mac", "a MAC address (aa:bb:cc:dd:ee:ff)", is_mac);
                if (!value) {
                    continue;
                }
                spec_port.mac = std::move(*value);
                std::transform(spec_port.mac.begin(), spec_port.mac.end(), spec_port.mac.begin(),
                               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
                if (const auto* pxe = port_entries.find("pxe")) {
                    if (auto b = m_reader.boolean(*pxe, field + ".pxe")) {
                        spec_port.pxe = *b;
                    }
                }
                if (const auto* net = port_entries.find("physicalNetwork")) {
                    if (auto s = m_reader.string(*net, field + ".physicalNetwork")) {
                        if (s->empty()) {
                            m_reader.error(*net, field + ".physicalNetwork", "must not be empty");
                        }
                        spec_port.physical_network = std::move(*s);
                    }
                }
                node.ports.push_back(std::move(spec_port));
                node.mac_at.push_back(position_of(*mac));
            }
        }
    }
    parse_fields(entries, node.fields);
    if (meta.ok) {
        node.incomplete = m_out.diagnostics.size() != errors_before;
        m_out.nodes.push_back(std::move(node));
    }
}

void DocumentParser::parse_node_class(const YAML::Node& doc, const YAML::Node& spec, const Metadata& meta)
{
    NodeClassDocument cls;
    cls.node_class.name = meta.name;
    cls.node_class.source = {m_path, position_of(doc).line};
    cls.name_at = meta.name_at;
    const std::size_t errors_before = m_out.diagnostics.size();
    if (!m_reader.mapping(spec, "spec", k_class_spec_keys) && !spec.IsMap()) {
        return;
    }
    const Entries entries(spec);
    if (const auto* bmc = entries.find("bmc")) {
        parse_bmc(*bmc, true, cls.node_class.fields, nullptr);
    }
    parse_fields(entries, cls.node_class.fields);
    if (meta.ok && m_out.diagnostics.size() == errors_before) {
        m_out.classes.push_back(std::move(cls));
    }
}

void DocumentParser::parse_bmc(const YAML::Node& bmc, bool is_class, NodeFields& fields, NodeDocument* node)
{
    if (!m_reader.mapping(bmc, "spec.bmc", is_class ? k_class_bmc_keys : k_node_bmc_keys) && !bmc.IsMap()) {
        return;
    }
    const Entries entries(bmc);
    if (const auto* driver = entries.find("driver")) {
        if (auto v = m_reader.one_of(*driver, "spec.bmc.driver", {"ipmi", "redfish", "idrac", "ilo", "irmc", "fake-hardware"})) {
            fields.driver = std::move(*v);
        }
    }
    if (const auto* port = entries.find("port")) {
        if (auto v = m_reader.integer(*port, "spec.bmc.port", 1, 65535)) {
            fields.bmc_port = static_cast<int>(*v);
        }
    }
    if (const auto* credentials = entries.find("credentials")) {
        if (auto v = m_reader.matching(*credentials, "spec.bmc.credentials",
                                       "a plain file name in the credentials directory (letters, digits, '.', '_', "
                                       "'-'; no '/' or '..')",
                                       is_plain_credentials_name)) {
            fields.credentials = std::move(*v);
        }
    }
    if (const auto* verify = entries.find("verifyCA")) {
        if (auto v = m_reader.boolean(*verify, "spec.bmc.verifyCA")) {
            fields.verify_ca = *v;
        }
    }
    if (node != nullptr) {
        if (const auto* address = entries.find("address")) {
            if (auto v = m_reader.matching(*address, "spec.bmc.address", "an IP address or host name", is_host)) {
                node->bmc_address = std::move(*v);
                node->address_at = position_of(*address);
            }
        } else {
            missing(bmc, "spec.bmc.address");
        }
        if (const auto* system = entries.find("systemId")) {
            if (auto v = m_reader.matching(*system, "spec.bmc.systemId", "a Redfish system path (starting with '/')",
                                           is_system_id)) {
                node->bmc_system_id = std::move(*v);
            }
        }
    }
}

void DocumentParser::parse_fields(const Entries& spec, NodeFields& fields)
{
    if (const auto* interfaces = spec.find("interfaces")) {
        if (m_reader.mapping(*interfaces, "spec.interfaces", k_interface_keys)) {
            for (const auto& kv : *interfaces) {
                const auto& key = kv.first.Scalar();
                if (auto v = m_reader.matching(kv.second, "spec.interfaces." + key, "an Ironic interface name",
                                               is_interface_name)) {
                    fields.interfaces[key] = std::move(*v);
                }
            }
        }
    }
    if (const auto* v = spec.find("automatedClean")) {
        fields.automated_clean = m_reader.boolean(*v, "spec.automatedClean");
    }
    if (const auto* v = spec.find("properties")) {
        if (!v->IsMap()) {
            m_reader.error(*v, "spec.properties", std::string("expected a mapping, got ") + describe(yaml_type(*v)));
        } else if (auto j = m_reader.to_json(*v, "spec.properties")) {
            fields.properties = std::move(*j);
        }
    }
    if (const auto* v = spec.find("resourceClass")) {
        fields.resource_class = m_reader.matching(*v, "spec.resourceClass",
                                                  "a resource class (letters, digits, '_', '.', '-', at most 80)",
                                                  is_resource_class);
    }
    if (const auto* v = spec.find("inspect")) {
        fields.inspect = m_reader.boolean(*v, "spec.inspect");
    }
    if (const auto* v = spec.find("expect")) {
        parse_expect(*v, fields.expect);
    }
    if (const auto* v = spec.find("provisionState")) {
        if (auto s = m_reader.one_of(*v, "spec.provisionState", {"manageable", "available", "active"})) {
            fields.provision_state = *s == "manageable"  ? ProvisionGoal::manageable
                                     : *s == "available" ? ProvisionGoal::available
                                                         : ProvisionGoal::active;
        }
    }
    if (const auto* v = spec.find("image")) {
        fields.image = parse_image(*v);
    }
    if (const auto* v = spec.find("configDrive")) {
        fields.config_drive = parse_config_drive(*v);
    }
    if (const auto* v = spec.find("maintenance")) {
        fields.maintenance = m_reader.boolean(*v, "spec.maintenance");
    }
    if (const auto* v = spec.find("maintenanceReason")) {
        if (auto s = m_reader.string(*v, "spec.maintenanceReason")) {
            if (s->size() > 255) {
                m_reader.error(*v, "spec.maintenanceReason", "at most 255 characters");
            } else {
                fields.maintenance_reason = std::move(*s);
            }
        }
    }
    if (const auto* v = spec.find("power")) {
        if (auto s = m_reader.one_of(*v, "spec.power", {"on", "off"})) {
            fields.power = *s == "on" ? PowerGoal::on : PowerGoal::off;
        }
    }
    if (const auto* v = spec.find("cleanSteps")) {
        fields.clean_steps = parse_clean_steps(*v);
    }
}

void DocumentParser::parse_expect(const YAML::Node& expect, HardwareExpectation& out)
{
    if (!m_reader.mapping(expect, "spec.expect", k_expect_keys)) {
        return;
    }
    const Entries entries(expect);
    if (const auto* v = entries.find("cpus")) {
        if (auto i = m_reader.integer(*v, "spec.expect.cpus", 1, 1 << 20)) out.cpus = static_cast<int>(*i);
    }
    if (const auto* v = entries.find("memoryMiB")) {
        out.memory_mib = m_reader.integer(*v, "spec.expect.memoryMiB", 1, std::int64_t{1} << 40);
    }
    if (const auto* v = entries.find("disks")) {
        if (auto i = m_reader.integer(*v, "spec.expect.disks", 0, 1 << 16)) out.disks = static_cast<int>(*i);
    }
    if (const auto* v = entries.find("cpuArch")) {
        if (auto s = m_reader.string(*v, "spec.expect.cpuArch")) {
            if (s->empty()) {
                m_reader.error(*v, "spec.expect.cpuArch", "must not be empty");
            } else {
                out.cpu_arch = std::move(*s);
            }
        }
    }
}

std::optional<ImageSpec> DocumentParser::parse_image(const YAML::Node& image)
{
    if (!m_reader.mapping(image, "spec.image", k_image_keys) && !image.IsMap()) {
        return std::nullopt;
    }
    const Entries entries(image);
    ImageSpec spec;
    const auto* source = entries.find("source");
    if (source == nullptr) {
        missing(image, "spec.image.source");
        return std::nullopt;
    }
    auto url = m_reader.matching(*source, "spec.image.source", "an http://, https:// or file:// URL", is_url);
    if (!url) {
        return std::nullopt;
    }
    spec.source = std::move(*url);
    if (const auto* v = entries.find("checksum")) {
        if (auto s = m_reader.matching(*v, "spec.image.checksum",
                                       "a checksum (md5:<32 hex>, sha256:<64 hex>, sha512:<128 hex>) or the URL of a "
                                       "checksum file",
                                       is_checksum)) {
            spec.checksum = std::move(*s);
        }
    } else if (spec.source.starts_with("http://") || spec.source.starts_with("https://")) {
        missing(image, "spec.image.checksum");
    }
    if (const auto* v = entries.find("kernel")) {
        if (auto s = m_reader.matching(*v, "spec.image.kernel", "an http://, https:// or file:// URL", is_url)) {
            spec.kernel = std::move(*s);
        }
    }
    if (const auto* v = entries.find("ramdisk")) {
        if (auto s = m_reader.matching(*v, "spec.image.ramdisk", "an http://, https:// or file:// URL", is_url)) {
            spec.ramdisk = std::move(*s);
        }
    }
    if (const auto* v = entries.find("rootGiB")) {
        if (auto i = m_reader.integer(*v, "spec.image.rootGiB", 1, 1 << 20)) spec.root_gib = static_cast<int>(*i);
    }
    return spec;
}

std::optional<ConfigDriveSpec> DocumentParser::parse_config_drive(const YAML::Node& drive)
{
    if (!m_reader.mapping(drive, "spec.configDrive", k_config_drive_keys) && !drive.IsMap()) {
        return std::nullopt;
    }
    const Entries entries(drive);
    ConfigDriveSpec spec;
    if (const auto* v = entries.find("userData")) {
        spec.user_data = m_reader.string(*v, "spec.configDrive.userData");
    }
    for (const char* key : {"metaData", "networkData"}) {
        if (const auto* v = entries.find(key)) {
            std::string field = std::string("spec.configDrive.") + key;
            if (!v->IsMap()) {
                m_reader.error(*v, field, std::string("expected a mapping, got ") + describe(yaml_type(*v)));
            } else if (auto j = m_reader.to_json(*v, field)) {
                (std::string_view(key) == "metaData" ? spec.meta_data : spec.network_data) = std::move(*j);
            }
        }
    }
    return spec;
}

std::optional<std::vector<CleanStep>> DocumentParser::parse_clean_steps(const YAML::Node& steps)
{
    if (!m_reader.sequence(steps, "spec.cleanSteps", 64)) {
        return std::nullopt;
    }
    std::vector<CleanStep> out;
    out.reserve(steps.size());
    std::size_t i = 0;
    for (const auto& step : steps) {
        auto field = index_field("spec.cleanSteps", i++);
        if (!m_reader.mapping(step, field, k_clean_step_keys) && !step.IsMap()) {
            continue;
        }
        const Entries entries(step);
        CleanStep cs;
        const auto* interface = entries.find("interface");
        const auto* name = entries.find("step");
        if (interface == nullptr) {
            missing(step, field + ".interface");
        } else if (auto s = m_reader.one_of(*interface, field + ".interface",
                                            {"deploy", "bios", "raid", "management", "power"})) {
            cs.interface = std::move(*s);
        }
        if (name == nullptr) {
            missing(step, field + ".step");
        } else if (auto s = m_reader.matching(*name, field + ".step", "a step name (lower-case, digits, '_')",
                                              is_step_name)) {
            cs.step = std::move(*s);
        }
        if (const auto* args = entries.find("args")) {
            if (!args->IsMap()) {
                m_reader.error(*args, field + ".args",
                               std::string("expected a mapping, got ") + describe(yaml_type(*args)));
            } else if (auto j = m_reader.to_json(*args, field + ".args")) {
                cs.args = std::move(*j);
            }
        }
        out.push_back(std::move(cs));
    }
    return out;
}

void DocumentParser::parse_policy(const YAML::Node& doc, const YAML::Node& spec, const Metadata& meta)
{
    PolicyDocument pd;
    pd.policy.name = meta.name;
    pd.policy.source = {m_path, position_of(doc).line};
    pd.name_at = meta.name_at;
    const std::size_t errors_before = m_out.diagnostics.size();
    if (!m_reader.mapping(spec, "spec", k_policy_spec_keys) && !spec.IsMap()) {
        return;
    }
    const Entries entries(spec);
    auto& p = pd.policy;
    if (const auto* v = entries.find("prune")) {
        if (auto b = m_reader.boolean(*v, "spec.prune")) p.prune = *b;
    }
    if (const auto* v = entries.find("massDeletion")) {
        if (m_reader.mapping(*v, "spec.massDeletion", k_mass_deletion_keys)) {
            const Entries mass(*v);
            if (const auto* m = mass.find("maxPercent")) {
                if (auto i = m_reader.integer(*m, "spec.massDeletion.maxPercent", 0, 100)) {
                    p.mass_deletion_max_percent = static_cast<int>(*i);
                }
            }
            if (const auto* a = mass.find("allow")) {
                if (auto b = m_reader.boolean(*a, "spec.massDeletion.allow")) p.mass_deletion_allowed = *b;
            }
        }
    }
    if (const auto* v = entries.find("maxRetries")) {
        if (auto i = m_reader.integer(*v, "spec.maxRetries", 0, 100)) p.max_retries = static_cast<int>(*i);
    }
    if (const auto* v = entries.find("limits")) {
        if (m_reader.mapping(*v, "spec.limits", k_limits_keys)) {
            const Entries limits(*v);
            if (const auto* m = limits.find("maxProvisioning")) {
                if (auto i = m_reader.integer(*m, "spec.limits.maxProvisioning", 1, 1000)) {
                    p.limits.max_provisioning = static_cast<int>(*i);
                }
            }
            for (const char* key : {"ironicQPS", "kubernetesQPS"}) {
                if (const auto* m = limits.find(key)) {
                    std::string field = std::string("spec.limits.") + key;
                    if (auto d = m_reader.number(*m, field)) {
                        if (*d <= 0 || *d > 1000) {
                            m_reader.error(*m, field, "must be greater than 0 and at most 1000, got " + m->Scalar());
                        } else {
                            (std::string_view(key) == "ironicQPS" ? p.limits.ironic_qps : p.limits.kubernetes_qps) = *d;
                        }
                    }
                }
            }
            if (const auto* m = limits.find("perBMC")) {
                if (auto i = m_reader.integer(*m, "spec.limits.perBMC", 1, 16)) {
                    p.limits.per_bmc = static_cast<int>(*i);
                }
            }
        }
    }
    if (meta.ok && m_out.diagnostics.size() == errors_before) {
        m_out.policies.push_back(std::move(pd));
    }
}

void DocumentParser::parse_kube(const YAML::Node& doc, const Entries& top, const std::string& api_version,
                                const std::string& kind)
{
    KubeDocument kd;
    kd.object.api_version = api_version;
    kd.object.kind = kind;
    kd.object.source = {m_path, position_of(doc).line};
    const auto* metadata = top.find("metadata");
    if (metadata == nullptr) {
        missing(doc, "metadata");
        return;
    }
    if (!metadata->IsMap()) {
        m_reader.error(*metadata, "metadata",
                       std::string("expected a mapping, got ") + describe(yaml_type(*metadata)));
        return;
    }
    const Entries entries(*metadata);
    const auto* name = entries.find("name");
    if (name == nullptr) {
        missing(*metadata, "metadata.name");
        return;
    }
    auto name_value = m_reader.string(*name, "metadata.name");
    if (!name_value) {
        return;
    }
    kd.object.name = std::move(*name_value);
    kd.name_at = position_of(*name);
    if (const auto* ns = entries.find("namespace")) {
        if (auto v = m_reader.string(*ns, "metadata.namespace")) kd.object.namespace_ = std::move(*v);
    }
    auto body = m_reader.to_json(doc, "");
    if (!body) {
        return;
    }
    kd.object.body = std::move(*body);
    if (api_version == "infrastructure.cluster.x-k8s.io/v1alpha1") {
        check_provider_kind(doc, top, kind);
    }
    m_out.kube_objects.push_back(std::move(kd));
}

void DocumentParser::check_machine_spec(const YAML::Node& spec, const std::string& field)
{
    if (!m_reader.mapping(spec, field, {"hostSelector", "image", "automatedCleaning", "providerID", "failureDomain"})) {
        return;
    }
    const Entries entries(spec);
    if (const auto* selector = entries.find("hostSelector")) {
        const std::string sf = join_field(field, "hostSelector");
        if (m_reader.mapping(*selector, sf, {"matchLabels", "matchExpressions"})) {
            const Entries se(*selector);
            if (const auto* labels = se.find("matchLabels")) {
                (void)m_reader.string_map(*labels, join_field(sf, "matchLabels"));
            }
            if (const auto* exprs = se.find("matchExpressions")) {
                const std::string ef = join_field(sf, "matchExpressions");
                if (m_reader.sequence(*exprs, ef, 64)) {
                    for (std::size_t i = 0; i < exprs->size(); ++i) {
                        const YAML::Node e = (*exprs)[i];
                        const std::string f = index_field(ef, i);
                        if (!m_reader.mapping(e, f, {"key", "operator", "values"})) continue;
                        const Entries ee(e);
                        if (ee.find("key") == nullptr) missing(e, join_field(f, "key"));
                        const auto* op = ee.find("operator");
                        if (op == nullptr) {
                            missing(e, join_field(f, "operator"));
                            continue;
                        }
                        auto o = m_reader.one_of(*op, join_field(f, "operator"), {"In", "NotIn", "Exists", "DoesNotExist"});
                        const auto* values = ee.find("values");
                        const bool has_values = values != nullptr && values->IsSequence() && values->size() > 0;
                        if (o && (*o == "In" || *o == "NotIn") && !has_values) {
                            m_reader.error(e, join_field(f, "values"), "operator " + *o + " needs at least one value");
                        } else if (o && (*o == "Exists" || *o == "DoesNotExist") && values != nullptr && has_values) {
                            m_reader.error(*values, join_field(f, "values"), "operator " + *o + " takes no values");
                        }
                    }
                }
            }
        }
    }
    if (const auto* v = entries.find("automatedCleaning")) (void)m_reader.boolean(*v, join_field(field, "automatedCleaning"));
    if (const auto* v = entries.find("providerID")) (void)m_reader.string(*v, join_field(field, "providerID"));
    if (const auto* v = entries.find("failureDomain")) (void)m_reader.string(*v, join_field(field, "failureDomain"));
    const auto* image = entries.find("image");
    if (image == nullptr) {
        return;  // each chosen node's own image from Git
    }
    const std::string imf = join_field(field, "image");
    if (!m_reader.mapping(*image, imf, {"url", "checksum", "diskFormat"})) {
        return;
    }
    const Entries ie(*image);
    if (const auto* url = ie.find("url")) {
        (void)m_reader.matching(*url, join_field(imf, "url"), "an http://, https:// or file:// URL", is_url);
    } else {
        missing(*image, join_field(imf, "url"));
    }
    if (const auto* checksum = ie.find("checksum")) {
        (void)m_reader.matching(*checksum, join_field(imf, "checksum"),
                                "a checksum (md5:<32 hex>, sha256:<64 hex>, sha512:<128 hex>) or the URL of a checksum file",
                                is_checksum);
    } else {
        missing(*image, join_field(imf, "checksum"));
    }
    if (const auto* format = ie.find("diskFormat")) {
        (void)m_reader.one_of(*format, join_field(imf, "diskFormat"), {"raw", "qcow2", "vdi", "vmdk", "live-iso"});
    }
}

void DocumentParser::check_provider_kind(const YAML::Node& doc, const Entries& top, const std::string& kind)
{
    if (kind != "MetalsyncCluster" && kind != "MetalsyncMachine" && kind != "MetalsyncMachineTemplate") {
        // Other providers share the group and version (KubevirtMachine ...): theirs to check. A
        // misspelt metalsync kind is not.
        std::string lower = kind;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        if (lower.starts_with("metalsync")) {
            m_reader.error(doc, "kind",
                           "unknown kind '" + kind + "' of metalsync's provider: MetalsyncCluster, MetalsyncMachine or "
                           "MetalsyncMachineTemplate");
        }
        return;
    }
    const auto* spec = top.find("spec");
    if (spec == nullptr) {
        if (kind == "MetalsyncMachineTemplate") missing(doc, "spec");
        return;
    }
    if (kind == "MetalsyncCluster") {
        if (!m_reader.mapping(*spec, "spec", {"controlPlaneEndpoint"})) return;
        // Entries hands out pointers into itself: it must outlive them (never a temporary).
        const Entries se(*spec);
        if (const auto* ep = se.find("controlPlaneEndpoint")) {
            if (!m_reader.mapping(*ep, "spec.controlPlaneEndpoint", {"host", "port"})) return;
            const Entries ee(*ep);
            if (const auto* host = ee.find("host")) {
                (void)m_reader.string(*host, "spec.controlPlaneEndpoint.host");
            } else {
                missing(*ep, "spec.controlPlaneEndpoint.host");
            }
            if (const auto* port = ee.find("port")) (void)m_reader.integer(*port, "spec.controlPlaneEndpoint.port", 1, 65535);
        }
        return;
    }
    if (kind == "MetalsyncMachine") {
        check_machine_spec(*spec, "spec");
        return;
    }
    if (!m_reader.mapping(*spec, "spec", {"template"})) return;
    const Entries se(*spec);
    const auto* tmpl = se.find("template");
    if (tmpl == nullptr) {
        missing(*spec, "spec.template");
        return;
    }
    if (!m_reader.mapping(*tmpl, "spec.template", {"metadata", "spec"})) return;
    const Entries te(*tmpl);
    const auto* tspec = te.find("spec");
    if (tspec == nullptr) {
        missing(*tmpl, "spec.template.spec");
        return;
    }
    check_machine_spec(*tspec, "spec.template.spec");
}

} // namespace

ParsedFile parse_file(const std::string& path, std::string_view content, const YamlLimits& limits)
{
    ParsedFile out;
    if (content.size() > limits.max_file_bytes) {
        // In bytes: whole MiB would print "file is 16 MiB; the limit is 16 MiB"
        // for a file just over the default limit, and "0 MiB" for small limits.
        out.diagnostics.push_back({path, 1, 1, "",
                                   "file is " + std::to_string(content.size()) + " bytes; the limit is " +
                                       std::to_string(limits.max_file_bytes) + " bytes"});
        return out;
    }
    std::size_t bad = 0;
    if (!is_valid_utf8(content, &bad)) {
        int line = 1 + static_cast<int>(std::count(content.begin(), content.begin() + static_cast<long>(bad), '\n'));
        auto line_start = content.rfind('\n', bad == 0 ? 0 : bad - 1);
        int column = static_cast<int>(bad - (line_start == std::string_view::npos ? 0 : line_start + 1)) + 1;
        out.diagnostics.push_back({path, line, column, "", "not valid UTF-8"});
        return out;
    }
    std::vector<YAML::Node> documents;
    try {
        // Read in place: LoadAll(std::string) would copy the file twice more.
        if (may_stall_on_comma(content)) {
            std::ispanstream stream(std::span<const char>(content.data(), content.size()));
            YAML::Parser parser(stream);
            StalledDocumentGuard guard(content);
            while (parser.HandleNextDocument(guard)) {
            }
        }
        std::ispanstream stream(std::span<const char>(content.data(), content.size()));
        documents = YAML::LoadAll(stream);
    } catch (const YAML::DeepRecursion& e) {
        // yaml-cpp words its own depth guard "bad file".
        out.diagnostics.push_back({path, e.mark.line + 1, e.mark.column + 1, "",
                                   "YAML nesting too deep (" + std::to_string(e.depth()) +
                                       " levels reached here); the limit is " + std::to_string(limits.max_depth) +
                                       " levels"});
        return out;
    } catch (const YAML::Exception& e) {
        out.diagnostics.push_back({path, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg});
        return out;
    }
    DocumentParser parser(path, out, limits);
    for (const auto& doc : documents) {
        if (!doc.IsDefined() || doc.IsNull()) {
            continue;  // an empty document (`---` at the end of a file)
        }
        try {
            parser.parse(doc);
        } catch (const YAML::Exception& e) {
            out.diagnostics.push_back({path, e.mark.line + 1, e.mark.column + 1, "", e.msg});
        }
    }
    return out;
}

} // namespace metalsync
