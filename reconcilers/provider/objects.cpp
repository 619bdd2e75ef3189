#include "reconcilers/provider/objects.hpp"

#include <set>
#include <utility>

#include "sources/git_known_hosts.hpp"

namespace metalsync::provider {

namespace {

using json = nlohmann::json;

// The field at `key` when it is an object (or absent: an empty object).
std::expected<json, std::string> object_at(const json& parent, const char* key, const std::string& where)
{
    if (!parent.is_object() || !parent.contains(key) || parent.at(key).is_null()) {
        return json::object();
    }
    if (!parent.at(key).is_object()) {
        return std::unexpected(where + key + ": not an object");
    }
    return parent.at(key);
}

std::expected<std::string, std::string> string_at(const json& parent, const char* key, const std::string& where)
{
    if (!parent.is_object() || !parent.contains(key) || parent.at(key).is_null()) {
        return std::string();
    }
    if (!parent.at(key).is_string()) {
        return std::unexpected(where + key + ": not a string");
    }
    return parent.at(key).get<std::string>();
}

std::expected<std::map<std::string, std::string>, std::string> string_map_at(const json& parent, const char* key,
                                                                           const std::string& where)
{
    auto obj = object_at(parent, key, where);
    if (!obj) {
        return std::unexpected(obj.error());
    }
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : obj->items()) {
        if (!v.is_string()) {
            return std::unexpected(where + key + "." + k + ": not a string");
        }
        out[k] = v.get<std::string>();
    }
    return out;
}

} // namespace

std::expected<HostSelector, std::string> host_selector_from_json(const json& selector)
{
    HostSelector out;
    if (selector.is_null()) {
        return out;
    }
    if (!selector.is_object()) {
        return std::unexpected("hostSelector: not an object");
    }
    auto labels = string_map_at(selector, "matchLabels", "hostSelector.");
    if (!labels) {
        return std::unexpected(labels.error());
    }
    out.match_labels = std::move(*labels);
    if (selector.contains("matchExpressions") && !selector.at("matchExpressions").is_null()) {
        const auto& list = selector.at("matchExpressions");
        if (!list.is_array()) {
            return std::unexpected("hostSelector.matchExpressions: not a list");
        }
        for (std::size_t i = 0; i < list.size(); ++i) {
            const std::string where = "hostSelector.matchExpressions[" + std::to_string(i) + "].";
            auto key = string_at(list[i], "key", where);
            auto op_text = string_at(list[i], "operator", where);
            if (!key || !op_text) {
                return std::unexpected(!key ? key.error() : op_text.error());
            }
            auto op = parse_selector_operator(*op_text);
            if (!op) {
                return std::unexpected(where + "operator: " + op.error());
            }
            SelectorRequirement r{*key, *op, {}};
            if (list[i].contains("values") && !list[i].at("values").is_null()) {
                if (!list[i].at("values").is_array()) {
                    return std::unexpected(where + "values: not a list");
                }
                for (const auto& v : list[i].at("values")) {
                    if (!v.is_string()) {
                        return std::unexpected(where + "values: not a list of strings");
                    }
                    r.values.push_back(v.get<std::string>());
                }
            }
            out.match_expressions.push_back(std::move(r));
        }
    }
    if (auto valid = validate_selector(out); !valid) {
        return std::unexpected("hostSelector." + valid.error());
    }
    return out;
}

std::expected<MachineSpec, std::string> machine_spec_from_json(const json& spec)
{
    MachineSpec out;
    if (!spec.is_object()) {
        return std::unexpected("spec: not an object");
    }
    auto selector = host_selector_from_json(spec.value("hostSelector", json()));
    if (!selector) {
        return std::unexpected("spec." + selector.error());
    }
    out.host_selector = std::move(*selector);
    auto image = object_at(spec, "image", "spec.");
    if (!image) {
        return std::unexpected(image.error());
    }
    for (auto [key, field] : {std::pair{"url", &out.image.url}, std::pair{"checksum", &out.image.checksum},
                              std::pair{"diskFormat", &out.image.disk_format}}) {
        auto value = string_at(*image, key, "spec.image.");
        if (!value) {
            return std::unexpected(value.error());
        }
        *field = std::move(*value);
    }
    if (spec.contains("automatedCleaning") && !spec.at("automatedCleaning").is_null()) {
        if (!spec.at("automatedCleaning").is_boolean()) {
            return std::unexpected("spec.automatedCleaning: not a boolean");
        }
        out.automated_cleaning = spec.at("automatedCleaning").get<bool>();
    }
    for (auto [key, field] :
         {std::pair{"providerID", &out.provider_id}, std::pair{"failureDomain", &out.failure_domain}}) {
        auto value = string_at(spec, key, "spec.");
        if (!value) {
            return std::unexpected(value.error());
        }
        *field = std::move(*value);
    }
    return out;
}

std::expected<Machine, std::string> machine_from_json(const json& object)
{
    if (!object.is_object()) {
        return std::unexpected("not an object");
    }
    Machine m;
    auto meta = object_at(object, "metadata", "");
    if (!meta) {
        return std::unexpected(meta.error());
    }
    for (auto [key, field] : {std::pair{"namespace", &m.ref.namespace_}, std::pair{"name", &m.ref.name},
                              std::pair{"uid", &m.ref.uid}}) {
        auto value = string_at(*meta, key, "metadata.");
        if (!value) {
            return std::unexpected(value.error());
        }
        if (value->empty()) {
            return std::unexpected(std::string("metadata.") + key + ": missing");
        }
        *field = std::move(*value);
    }
    if (meta->contains("generation") && meta->at("generation").is_number_integer()) {
        m.generation = meta->at("generation").get<std::int64_t>();
    }
    m.deleting = meta->contains("deletionTimestamp") && !meta->at("deletionTimestamp").is_null();
    auto labels = string_map_at(*meta, "labels", "metadata.");
    auto annotations = string_map_at(*meta, "annotations", "metadata.");
    if (!labels || !annotations) {
        return std::unexpected(!labels ? labels.error() : annotations.error());
    }
    if (auto it = labels->find(k_cluster_name_label); it != labels->end()) {
        m.cluster = it->second;
    }
    // Cluster API's rule: the annotation's presence pauses, whatever its value.
    m.paused = annotations->contains(k_paused_annotation);

    auto spec = machine_spec_from_json(object.value("spec", json::object()));
    if (!spec) {
        return std::unexpected(spec.error());
    }
    m.spec = std::move(*spec);

    auto status = object_at(object, "status", "");
    if (!status) {
        return std::unexpected(status.error());
    }
    auto node = string_at(*status, "node", "status.");
    if (!node) {
        return std::unexpected(node.error());
    }
    m.status_node = std::move(*node);
    auto init = object_at(*status, "initialization", "status.");
    if (!init) {
        return std::unexpected(init.error());
    }
    m.provisioned = init->value("provisioned", false) || status->value("ready", false);
    return m;
}

std::expected<BootstrapData, std::string> bootstrap_from_secret(const json& secret)
{
    auto data = object_at(secret, "data", "");
    if (!data) {
        return std::unexpected(data.error());
    }
    auto value = string_at(*data, "value", "data.");
    if (!value) {
        return std::unexpected(value.error());
    }
    if (value->empty()) {
        return std::unexpected("data.value: missing (the bootstrap provider has not written it yet)");
    }
    auto decoded = base64_decode(*value);
    if (!decoded) {
        return std::unexpected("data.value: not base64");
    }
    BootstrapData out;
    out.value = std::move(*decoded);
    auto format = string_at(*data, "format", "data.");
    if (!format) {
        return std::unexpected(format.error());
    }
    if (!format->empty()) {
        auto f = base64_decode(*format);
        if (!f) {
            return std::unexpected("data.format: not base64");
        }
        out.format = std::move(*f);
    }
    static const std::set<std::string> formats = {"cloud-config", "ignition"};
    if (!formats.contains(out.format)) {
        return std::unexpected("data.format: \"" + out.format + "\" is neither cloud-config nor ignition");
    }
    return out;
}

std::vector<PoolNode> pool_nodes(const DesiredState& desired, const ObservedState& observed)
{
    std::map<std::string, PoolNode> by_name;
    for (const auto& [name, spec] : desired.nodes) {
        PoolNode& n = by_name[name];
        n.name = name;
        n.labels = spec.labels;
        n.in_git = true;
        n.goal_is_available = spec.provision_state == ProvisionGoal::available;
        if (spec.image) {
            n.image_url = spec.image->source;
            n.image_checksum = spec.image->checksum;
        }
    }
    for (const auto& [name, node] : observed.nodes) {
        PoolNode& n = by_name[name];
        if (n.name.empty()) {
            // In Ironic only: Git's labels are gone with it, so it matches no
            // selector; kept so a claim on it can still be found and released.
            n.name = name;
            n.in_git = false;
            n.goal_is_available = false;
        }
        n.provision_state = node.provision_state;
        n.maintenance = node.maintenance;
        n.last_error = node.last_error;
        n.instance_uuid = node.instance_uuid;
    }
    std::vector<PoolNode> out;
    out.reserve(by_name.size());
    for (auto& [name, n] : by_name) {
        out.push_back(std::move(n));
    }
    return out;
}

ClaimTable claim_table_from_rows(const std::vector<ClaimRow>& rows, std::vector<std::string>* problems)
{
    ClaimTable table;
    for (const auto& row : rows) {
        auto phase = parse_claim_phase(row.phase);
        if (!phase) {
            if (problems) problems->push_back("claim on node " + row.node + ": " + phase.error());
            continue;
        }
        ClaimRecord record{row.node, MachineRef{row.machine_namespace, row.machine_name, row.machine_uid}, row.cluster,
                           *phase};
        if (auto put = table.put(record); !put && problems) {
            problems->push_back("claim on node " + row.node + ": " + put.error());
        }
    }
    return table;
}

ClaimRow claim_row(const ClaimRecord& record, double now)
{
    return {record.node,    record.machine.namespace_, record.machine.name, record.machine.uid,
            record.cluster, to_string(record.phase),   now};
}

} // namespace metalsync::provider
