#include "store/observed_json.hpp"

namespace metalsync {

namespace {

using nlohmann::json;

// Reads j[key] into out when present; a wrong type throws json::type_error,
// turned into a StoreError by the callers.
template <typename T>
void read_field(const json& j, const char* key, T& out)
{
    if (auto it = j.find(key); it != j.end()) {
        out = it->template get<T>();
    }
}

void read_json_field(const json& j, const char* key, json& out)
{
    if (auto it = j.find(key); it != j.end()) {
        out = *it;
    }
}

ObservedPort port_from(const json& j)
{
    ObservedPort port;
    read_field(j, "uuid", port.uuid);
    read_field(j, "node_uuid", port.node_uuid);
    read_field(j, "address", port.mac);
    read_field(j, "pxe_enabled", port.pxe_enabled);
    read_field(j, "physical_network", port.physical_network);
    return port;
}

} // namespace

json to_json(const ObservedPort& port)
{
    return json{
        {"uuid", port.uuid},
        {"node_uuid", port.node_uuid},
        {"address", port.mac},  // Ironic's name for the MAC
        {"pxe_enabled", port.pxe_enabled},
        {"physical_network", port.physical_network},
    };
}

json to_json(const ObservedNode& node)
{
    json ports = json::array();
    for (const auto& port : node.ports) {
        ports.push_back(to_json(port));
    }
    json interfaces = json::object();
    for (const auto& [name, value] : node.interfaces) {
        interfaces[name] = value;
    }
    return json{
        {"uuid", node.uuid},
        {"name", node.name},
        {"driver", node.driver},
        {"provision_state", node.provision_state},
        {"target_provision_state", node.target_provision_state},
        {"power_state", node.power_state},
        {"target_power_state", node.target_power_state},
        {"maintenance", node.maintenance},
        {"maintenance_reason", node.maintenance_reason},
        {"last_error", node.last_error},
        {"reservation", node.reservation},
        {"driver_info", node.driver_info},
        {"properties", node.properties},
        {"instance_info", node.instance_info},
        {"extra", node.extra},
        {"resource_class", node.resource_class},
        {"interfaces", std::move(interfaces)},
        {"automated_clean", node.automated_clean ? json(*node.automated_clean) : json(nullptr)},
        {"provision_updated_at", node.provision_updated_at},
        {"instance_uuid", node.instance_uuid},
        {"ports", std::move(ports)},
    };
}

std::expected<ObservedPort, StoreError> observed_port_from_json(const json& j)
{
    if (!j.is_object()) {
        return std::unexpected(StoreError{"observed port: expected a JSON object", StoreErrorKind::corrupt});
    }
    try {
        return port_from(j);
    } catch (const json::exception& e) {
        return std::unexpected(StoreError{std::string("observed port: ") + e.what(), StoreErrorKind::corrupt});
    }
}

std::expected<ObservedNode, StoreError> observed_node_from_json(const json& j)
{
    if (!j.is_object()) {
        return std::unexpected(StoreError{"observed node: expected a JSON object", StoreErrorKind::corrupt});
    }
    try {
        ObservedNode node;
        read_field(j, "uuid", node.uuid);
        read_field(j, "name", node.name);
        read_field(j, "driver", node.driver);
        read_field(j, "provision_state", node.provision_state);
        read_field(j, "target_provision_state", node.target_provision_state);
        read_field(j, "power_state", node.power_state);
        read_field(j, "target_power_state", node.target_power_state);
        read_field(j, "maintenance", node.maintenance);
        read_field(j, "maintenance_reason", node.maintenance_reason);
        read_field(j, "last_error", node.last_error);
        read_field(j, "reservation", node.reservation);
        read_json_field(j, "driver_info", node.driver_info);
        read_json_field(j, "properties", node.properties);
        read_json_field(j, "instance_info", node.instance_info);
        read_json_field(j, "extra", node.extra);
        read_field(j, "resource_class", node.resource_class);
        if (auto it = j.find("interfaces"); it != j.end() && !it->is_null()) {
            for (const auto& [name, value] : it->items()) {
                node.interfaces[name] = value.get<std::string>();
            }
        }
        if (auto it = j.find("automated_clean"); it != j.end() && !it->is_null()) {
            node.automated_clean = it->get<bool>();
        }
        read_field(j, "provision_updated_at", node.provision_updated_at);
        read_field(j, "instance_uuid", node.instance_uuid);
        if (auto it = j.find("ports"); it != j.end() && !it->is_null()) {
            for (const auto& port : *it) {
                node.ports.push_back(port_from(port));
            }
        }
        return node;
    } catch (const json::exception& e) {
        return std::unexpected(StoreError{std::string("observed node: ") + e.what(), StoreErrorKind::corrupt});
    }
}

} // namespace metalsync
