#pragma once

// What Ironic reports, as the planner sees it. Filled by the Ironic adapter
// (one paginated node list and one port list per tick) or read back from the
// store's observed tables. Pure data.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace metalsync {

struct ObservedPort {
    std::string uuid;
    std::string node_uuid;
    std::string mac;  // lower-case
    bool pxe_enabled = true;
    std::string physical_network;
};

struct ObservedNode {
    std::string uuid;
    std::string name;
    std::string driver;
    std::string provision_state;         // Ironic's own words: "enroll", "manageable", "clean wait", ...
    std::string target_provision_state;  // empty when none
    std::string power_state;             // "power on" | "power off" | empty
    std::string target_power_state;
    bool maintenance = false;
    std::string maintenance_reason;
    std::string last_error;
    std::string reservation;             // conductor holding the lock; empty when unlocked
    nlohmann::json driver_info = nlohmann::json::object();   // passwords read back as "******"
    nlohmann::json properties = nlohmann::json::object();
    nlohmann::json instance_info = nlohmann::json::object();
    nlohmann::json extra = nlohmann::json::object();
    std::string resource_class;
    std::map<std::string, std::string> interfaces;  // boot, deploy, ... as Ironic reports them
    std::optional<bool> automated_clean;
    std::string provision_updated_at;
    std::string instance_uuid;           // the instance the node runs (a Cluster API machine's uid); empty when none
    std::vector<ObservedPort> ports;
};

struct ObservedState {
    std::map<std::string, ObservedNode> nodes;  // by name; Ironic nodes without a name are ignored
    bool complete = false;                      // false when observation failed this tick
};

} // namespace metalsync
