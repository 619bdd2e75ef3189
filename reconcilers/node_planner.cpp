#include "reconcilers/node_planner.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace metalsync {

namespace {

const std::set<std::string> k_busy_states = {
    "verifying", "cleaning",  "clean wait", "inspecting", "inspect wait", "deploying", "wait call-back",
    "deleting",  "adopting",  "rescuing",   "rescue wait", "unrescuing",  "servicing", "service wait",
    "rebuilding"};

const std::set<std::string> k_failure_states = {"deploy failed", "clean failed", "inspect failed", "error",
                                                "adopt failed", "rescue failed", "unrescue failed", "service failed"};

std::string fnv_hex(const std::string& data)
{
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : data) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

int bmc_port(const NodeSpec& spec) { return spec.bmc.port.value_or(default_bmc_port(spec.bmc.driver)); }

std::string bmc_key(const NodeSpec& spec)
{
    if (spec.bmc.address.empty()) {
        return "";
    }
    return spec.bmc.address + ":" + std::to_string(bmc_port(spec));
}

std::string url_host(const std::string& address)
{
    return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

// Keys of `want` whose values differ in `have`; a JSON-Patch putting them back.
void patch_subset(const std::string& path, const nlohmann::json& want, const nlohmann::json& have,
                  nlohmann::json& patch, std::vector<std::string>& changed)
{
    for (const auto& [key, value] : want.items()) {
        bool present = have.is_object() && have.contains(key);
        if (present && have.at(key) == value) {
            continue;
        }
        patch.push_back({{"op", present ? "replace" : "add"}, {"path", path + "/" + key}, {"value", value}});
        changed.push_back(path.substr(1) + "." + key);
    }
}

struct NodePlanner {
    const PlanInput& in;
    Plan& plan;

    void add(const NodeSpec& spec, ActionVerb verb, std::string reason, nlohmann::json params = nlohmann::json::object(),
             bool provisioning = false, bool retry = false)
    {
        Action a{spec.name, verb, std::move(reason), std::move(params), "", provisioning, retry};
        switch (verb) {
        case ActionVerb::manage:
        case ActionVerb::inspect:
        case ActionVerb::provide:
        case ActionVerb::clean:
        case ActionVerb::deploy:
        case ActionVerb::rebuild:
        case ActionVerb::undeploy:
        case ActionVerb::set_power:
        case ActionVerb::adopt_node: a.bmc = bmc_key(spec); break;
        default: break;
        }
        plan.actions.push_back(std::move(a));
    }

    void verdict(const std::string& node, NodeCondition c, std::string message)
    {
        plan.verdicts.push_back({node, c, std::move(message)});
    }

    const NodeMemory* memory(const std::string& name) const
    {
        auto it = in.memory.find(name);
        return it == in.memory.end() ? nullptr : &it->second;
    }

    std::string secret_hash(const std::string& name) const
    {
        auto it = in.secret_hashes.find(name);
        return it == in.secret_hashes.end() ? "" : it->second;
    }

    nlohmann::json create_body(const NodeSpec& spec) const
    {
        // Built by assignment: a braced initializer list copies each value
        // once more (plan_nodes builds one body per node of the site).
        nlohmann::json body = nlohmann::json::object();
        body["name"] = spec.name;
        body["driver"] = spec.bmc.driver;
        body["driver_info"] = desired_driver_info(spec);
        body["properties"] = spec.properties;
        body["extra"]["metalsync"] = in.instance;
        body["automated_clean"] = spec.automated_clean;
        if (!spec.resource_class.empty()) body["resource_class"] = spec.resource_class;
        for (const auto& [k, v] : spec.interfaces) {
            body[k + "_interface"] = v;
        }
        return body;
    }

    void plan_missing(const NodeSpec& spec)
    {
        const auto* mem = memory(spec.name);
        nlohmann::json params = nlohmann::json::object();
        params["node"] = create_body(spec);
        params["credentials"] = spec.bmc.credentials;
        auto& ports = params["ports"] = nlohmann::json::array();
        ports.get_ref<nlohmann::json::array_t&>().reserve(spec.ports.size());
        for (const auto& p : spec.ports) {
            nlohmann::json port = nlohmann::json::object();
            port["address"] = p.mac;
            port["pxe_enabled"] = p.pxe;
            ports.push_back(std::move(port));
        }
        if (mem != nullptr && mem->was_active) {
            params["instance_info"] = desired_instance_info(spec);
            add(spec, ActionVerb::adopt_node,
                "Ironic no longer knows this node, which was active: enroll it again and adopt it (no redeploy)",
                std::move(params));
            verdict(spec.name, NodeCondition::progressing, "re-enrolling for adoption");
            return;
        }
        add(spec, ActionVerb::create_node, "declared in Git, not enrolled in Ironic", std::move(params));
        verdict(spec.name, NodeCondition::progressing, "enrolling");
    }

    // Field drift and port drift; returns true when something was planned.
    // `claimed`: a machine's claim holds the node, and its automated_clean is
    // the machine's (MetalsyncMachine spec.automatedCleaning) until released.
    bool plan_drift(const NodeSpec& spec, const ObservedNode& node, bool claimed = false)
    {
        bool planned = false;
        nlohmann::json patch = nlohmann::json::array();
        std::vector<std::string> changed;
        if (node.driver != spec.bmc.driver) {
            patch.push_back({{"op", "replace"}, {"path", "/driver"}, {"value", spec.bmc.driver}});
            changed.push_back("driver");
        }
        patch_subset("/driver_info", desired_driver_info(spec), node.driver_info, patch, changed);
        patch_subset("/properties", spec.properties, node.properties, patch, changed);
        if (!spec.resource_class.empty() && node.resource_class != spec.resource_class) {
            patch.push_back({{"op", "replace"}, {"path", "/resource_class"}, {"value", spec.resource_class}});
            changed.push_back("resource_class");
        }
        for (const auto& [k, v] : spec.interfaces) {
            auto it = node.interfaces.find(k);
            if (it == node.interfaces.end() || it->second != v) {
                patch.push_back({{"op", "replace"}, {"path", "/" + k + "_interface"}, {"value", v}});
                changed.push_back(k + "_interface");
            }
        }
        if (!claimed && node.automated_clean && *node.automated_clean != spec.automated_clean) {
            patch.push_back({{"op", "replace"}, {"path", "/automated_clean"}, {"value", spec.automated_clean}});
            changed.push_back("automated_clean");
        }
        const auto* mem = memory(spec.name);
        std::string want_secret = secret_hash(spec.name);
        bool secret_drift = !want_secret.empty() && (mem == nullptr || mem->applied_secret_hash != want_secret);
        if (!patch.empty() || secret_drift) {
            std::string what;
            for (const auto& c : changed) {
                what += (what.empty() ? "" : ", ") + c;
            }
            // Credentials are not in Git: the file named there is new, changed,
            // or never written to Ironic (Ironic masks them, so it cannot be asked).
            std::string reason = what.empty() ? "" : "differs from Git: " + what;
            if (secret_drift) {
                reason += std::string(reason.empty() ? "" : "; ") + "credentials file " + spec.bmc.credentials +
                          (mem == nullptr || mem->applied_secret_hash.empty() ? " not written to Ironic yet"
                                                                              : " changed since it was written");
            }
            add(spec, ActionVerb::update_node, reason,
                {{"patch", patch}, {"credentials", secret_drift ? spec.bmc.credentials : ""},
                 {"secret_hash", secret_drift ? want_secret : ""}});
            planned = true;
        }
        // Ports: by MAC.
        std::map<std::string, const ObservedPort*> have;
        for (const auto& p : node.ports) {
            have[p.mac] = &p;
        }
        std::set<std::string> want;
        for (const auto& p : spec.ports) {
            want.insert(p.mac);
            auto it = have.find(p.mac);
            if (it == have.end()) {
                add(spec, ActionVerb::create_port, "port " + p.mac + " declared in Git, missing in Ironic",
                    {{"node_uuid", node.uuid}, {"address", p.mac}, {"pxe_enabled", p.pxe}});
                planned = true;
            } else if (it->second->pxe_enabled != p.pxe) {
                add(spec, ActionVerb::update_port, "port " + p.mac + " pxe_enabled differs from Git",
                    {{"uuid", it->second->uuid},
                     {"patch", nlohmann::json::array({{{"op", "replace"}, {"path", "/pxe_enabled"}, {"value", p.pxe}}})}});
                planned = true;
            }
        }
        for (const auto& p : node.ports) {
            if (!want.contains(p.mac)) {
                add(spec, ActionVerb::delete_port, "port " + p.mac + " is not in Git", {{"uuid", p.uuid}, {"address", p.mac}});
                planned = true;
            }
        }
        return planned;
    }

    bool backoff_holds(const NodeMemory* mem) const { return mem != nullptr && mem->next_attempt_at > in.now; }

    void plan_failure(const NodeSpec& spec, const ObservedNode& node)
    {
        // Attempts and backoff count against the spec they were made with: a
        // changed spec (the user's fix in Git) starts afresh.
        const auto* mem = memory(spec.name);
        if (mem != nullptr && !mem->spec_hash.empty() && mem->spec_hash != spec_hash(spec)) {
            mem = nullptr;
        }
        int attempts = mem != nullptr ? mem->attempts : 0;
        int max = in.desired.policy.max_retries;
        const std::string& st = node.provision_state;
        if (attempts >= max) {
            verdict(spec.name, NodeCondition::failed,
                    st + " after " + std::to_string(attempts) + " attempts: " +
                        (node.last_error.empty() ? "no error reported by Ironic" : node.last_error));
            return;
        }
        if (backoff_holds(mem)) {
            verdict(spec.name, NodeCondition::waiting,
                    st + " (attempt " + std::to_string(attempts) + " of " + std::to_string(max) +
                        "), next retry after backoff: " + node.last_error);
            return;
        }
        std::string why = st + ", retry " + std::to_string(attempts + 1) + " of " + std::to_string(max);
        if (st == "deploy failed") {
            if (spec.provision_state == ProvisionGoal::active) {
                add(spec, ActionVerb::deploy, why, deploy_params(spec), true, true);
            } else {
                add(spec, ActionVerb::undeploy, why, {}, true, true);
            }
        } else if (st == "clean failed" || st == "inspect failed") {
            add(spec, ActionVerb::manage, why, {}, false, true);
        } else if (st == "adopt failed") {
            add(spec, ActionVerb::adopt_node, why, {{"retry_adopt", true}}, true, true);
        } else if (st == "error") {
            add(spec, ActionVerb::undeploy, why, {}, true, true);
        } else {
            verdict(spec.name, NodeCondition::failed, st + ": not a state metalsync recovers from; " + node.last_error);
            return;
        }
        verdict(spec.name, NodeCondition::progressing, why);
    }

    nlohmann::json deploy_params(const NodeSpec& spec) const
    {
        nlohmann::json p = {{"instance_info", desired_instance_info(spec)}, {"config_drive_hash", config_drive_hash(spec)}};
        if (spec.config_drive) {
            nlohmann::json cd = {{"meta_data", spec.config_drive->meta_data}};
            if (spec.config_drive->user_data) cd["user_data"] = *spec.config_drive->user_data;
            if (!spec.config_drive->network_data.is_null()) cd["network_data"] = spec.config_drive->network_data;
            p["configdrive"] = std::move(cd);
        }
        return p;
    }

    bool instance_info_differs(const NodeSpec& spec, const ObservedNode& node) const
    {
        // Named: a range-for over a temporary's items() dangles before C++23's P2718,
        // which g++ 12 does not implement.
        const auto want = desired_instance_info(spec);
        for (const auto& [k, v] : want.items()) {
            if (!node.instance_info.contains(k) || node.instance_info.at(k) != v) {
                return true;
            }
        }
        return false;
    }

    // A manageable node that was inspected: collect the result once, inspect
    // again when `expect` changed since, hold it while the result does not
    // meet `expect`. True when the node may go on (clean steps, provide).
    bool plan_inspection_gate(const NodeSpec& spec, const NodeMemory& mem)
    {
        const std::string key = expect_key(spec.expect);
        if (!mem.inspection) {
            if (backoff_holds(&mem)) {
                verdict(spec.name, NodeCondition::waiting, "inspected; reading its result after a failed attempt");
                return false;
            }
            add(spec, ActionVerb::collect_inspection, "inspection finished: read its result", {{"expect", key}});
            verdict(spec.name, NodeCondition::progressing, "inspected; reading the result");
            return false;
        }
        if (mem.inspection->expect_key != key) {
            // The schema's promise: a changed `expect` is checked against a
            // fresh inspection (the hardware may have been fixed meanwhile).
            add(spec, ActionVerb::inspect, "expect changed in Git since the last inspection: inspect again", {}, true);
            verdict(spec.name, NodeCondition::progressing, "inspecting again for the new expect");
            return false;
        }
        auto check = check_expectation(spec.expect, mem.inspection->hardware);
        if (!check.ok()) {
            verdict(spec.name, NodeCondition::failed,
                    "inspection-mismatch: " + check.mismatch_text() +
                        "; held at manageable (fix the hardware or expect in Git; a new expect inspects again)");
            return false;
        }
        return true;
    }

    void plan_existing(const NodeSpec& spec, const ObservedNode& node)
    {
        const std::string& st = node.provision_state;
        const auto* mem = memory(spec.name);
        if (is_busy_state(st)) {
            verdict(spec.name, NodeCondition::progressing,
                    st + (node.target_provision_state.empty() ? "" : " (to " + node.target_provision_state + ")"));
            return;
        }
        if (node.maintenance != spec.maintenance ||
            (spec.maintenance && !spec.maintenance_reason.empty() && node.maintenance_reason != spec.maintenance_reason)) {
            add(spec, ActionVerb::set_maintenance,
                spec.maintenance ? "Git puts the node in maintenance" : "Git takes the node out of maintenance",
                {{"maintenance", spec.maintenance}, {"reason", spec.maintenance_reason}});
            verdict(spec.name, NodeCondition::progressing, "maintenance change");
            return;
        }
        bool drift = plan_drift(spec, node);
        if (spec.maintenance) {
            verdict(spec.name, NodeCondition::maintenance,
                    "in maintenance" + (spec.maintenance_reason.empty() ? "" : ": " + spec.maintenance_reason));
            return;
        }
        if (k_failure_states.contains(st)) {
            plan_failure(spec, node);
            return;
        }
        if (node.reservation.size() > 0) {
            verdict(spec.name, NodeCondition::waiting, "locked by " + node.reservation);
            return;
        }
        auto goal = spec.provision_state;
        bool progressing = drift;
        if (st == "enroll") {
            add(spec, ActionVerb::manage, "enrolled; verify the BMC and make it manageable", {}, true);
            progressing = true;
        } else if (st == "manageable") {
            std::string steps_hash = clean_steps_hash(spec);
            if (mem != nullptr && mem->was_active) {
                // Re-enrolled after Ironic forgot it while active (a node that
                // went through available has was_active cleared): adopt it
                // before anything that would touch its disks (inspect, clean, provide).
                add(spec, ActionVerb::adopt_node,
                    "enrolled again after Ironic forgot it while active: adopt (no redeploy)",
                    {{"instance_info", desired_instance_info(spec)}}, true);
                progressing = true;
            } else if (spec.inspect && (mem == nullptr || !mem->inspected)) {
                add(spec, ActionVerb::inspect, "inspection asked for and not done since enrollment", {}, true);
                progressing = true;
            } else if (spec.inspect && !plan_inspection_gate(spec, *mem)) {
                return;
            } else if (!spec.clean_steps.empty() && (mem == nullptr || mem->clean_steps_hash != steps_hash)) {
                nlohmann::json steps = nlohmann::json::array();
                for (const auto& s : spec.clean_steps) {
                    nlohmann::json sj = {{"interface", s.interface}, {"step", s.step}};
                    if (!s.args.empty()) sj["args"] = s.args;
                    steps.push_back(sj);
                }
                add(spec, ActionVerb::clean, "manual clean steps changed in Git",
                    {{"clean_steps", steps}, {"clean_steps_hash", steps_hash}}, true);
                progressing = true;
            } else if (goal != ProvisionGoal::manageable) {
                add(spec, ActionVerb::provide, std::string("goal is ") + to_string(goal) + ": provide (automated cleaning)", {}, true);
                progressing = true;
            }
        } else if (st == "available") {
            if (goal == ProvisionGoal::manageable) {
                add(spec, ActionVerb::manage, "goal is manageable", {}, false);
                progressing = true;
            } else if (goal == ProvisionGoal::active) {
                add(spec, ActionVerb::deploy, "goal is active: deploy " + spec.image->source, deploy_params(spec), true);
                progressing = true;
            }
        } else if (st == "active") {
            if (goal != ProvisionGoal::active) {
                add(spec, ActionVerb::undeploy, std::string("goal is ") + to_string(goal) + ": undeploy (cleaning)", {}, true);
                progressing = true;
            } else if (instance_info_differs(spec, node) ||
                       (mem != nullptr && !mem->config_drive_hash.empty() && mem->config_drive_hash != config_drive_hash(spec))) {
                add(spec, ActionVerb::rebuild, "image or config drive changed in Git: rebuild", deploy_params(spec), true);
                progressing = true;
            }
        } else {
            verdict(spec.name, NodeCondition::waiting, "in state '" + st + "', which metalsync does not drive");
            return;
        }
        if (!progressing && spec.power && (st == "manageable" || st == "available" || st == "active")) {
            std::string want = *spec.power == PowerGoal::on ? "power on" : "power off";
            if (!node.power_state.empty() && node.power_state != want && node.target_power_state.empty()) {
                add(spec, ActionVerb::set_power, "Git asks for " + want, {{"target", want}});
                progressing = true;
            }
        }
        if (progressing) {
            verdict(spec.name, NodeCondition::progressing, st + " → " + to_string(goal));
        } else {
            verdict(spec.name, NodeCondition::at_goal, st);
        }
    }

    // A node a Cluster API machine's claim holds: the provider drives its
    // provision state, instance_info and power; Git keeps governing what
    // any node has (driver and credentials, properties, interfaces,
    // resource class, ports, maintenance). Never retired while held, even
    // when Git removed it.
    void plan_claimed(const NodeSpec* spec, const ObservedNode& node, const std::string& why)
    {
        if (spec == nullptr) {
            verdict(node.name, NodeCondition::claimed, why);
            return;
        }
        if (is_busy_state(node.provision_state) || !node.reservation.empty()) {
            verdict(spec->name, NodeCondition::claimed, why + "; " + node.provision_state);
            return;
        }
        if (node.maintenance != spec->maintenance ||
            (spec->maintenance && !spec->maintenance_reason.empty() &&
             node.maintenance_reason != spec->maintenance_reason)) {
            add(*spec, ActionVerb::set_maintenance,
                spec->maintenance ? "Git puts the node in maintenance" : "Git takes the node out of maintenance",
                {{"maintenance", spec->maintenance}, {"reason", spec->maintenance_reason}});
            verdict(spec->name, NodeCondition::progressing, "maintenance change; " + why);
            return;
        }
        if (plan_drift(*spec, node, true)) {
            verdict(spec->name, NodeCondition::progressing, "Git's change applied; " + why);
            return;
        }
        verdict(spec->name, NodeCondition::claimed, why);
    }

    void plan_orphan(const ObservedNode& node)
    {
        bool ours = node.extra.is_object() && node.extra.contains("metalsync") &&
                    node.extra["metalsync"] == in.instance;
        if (!ours) {
            verdict(node.name, NodeCondition::orphaned, "in Ironic, not in Git, and not enrolled by metalsync: left alone");
            return;
        }
        if (!in.desired.policy.prune) {
            verdict(node.name, NodeCondition::orphaned, "removed from Git; prune is off, so it stays in Ironic");
            return;
        }
        NodeSpec fake;
        fake.name = node.name;
        const std::string& st = node.provision_state;
        if (is_busy_state(st)) {
            verdict(node.name, NodeCondition::progressing, "removed from Git; waiting for " + st);
            return;
        }
        if (node.maintenance) {
            add(fake, ActionVerb::set_maintenance, "removed from Git: leave maintenance before retiring", {{"maintenance", false}, {"reason", ""}});
        } else if (st == "active" || st == "deploy failed" || st == "error") {
            add(fake, ActionVerb::undeploy, "removed from Git (prune): undeploy before delete", {}, true);
        } else if (st == "available" || st == "clean failed" || st == "inspect failed") {
            // Ironic deletes only enroll, manageable and adopt failed nodes.
            add(fake, ActionVerb::manage, "removed from Git (prune): manage before delete");
        } else {
            add(fake, ActionVerb::delete_node, "removed from Git (prune)", {{"uuid", node.uuid}});
        }
        verdict(node.name, NodeCondition::progressing, "retiring: removed from Git");
    }
};

} // namespace

bool is_busy_state(const std::string& provision_state) { return k_busy_states.contains(provision_state); }

nlohmann::json desired_driver_info(const NodeSpec& spec)
{
    const auto& b = spec.bmc;
    nlohmann::json info = nlohmann::json::object();
    if (b.driver == "ipmi" || (b.driver == "fake-hardware" && !b.credentials.empty())) {
        info["ipmi_address"] = b.address;
        info["ipmi_port"] = bmc_port(spec);
    } else if (b.driver == "redfish" || b.driver == "idrac") {
        info["redfish_address"] = "https://" + url_host(b.address) + ":" + std::to_string(bmc_port(spec));
        if (!b.system_id.empty()) info["redfish_system_id"] = b.system_id;
        if (b.verify_ca) info["redfish_verify_ca"] = *b.verify_ca;
    } else if (b.driver == "ilo") {
        info["ilo_address"] = b.address;
    } else if (b.driver == "irmc") {
        info["irmc_address"] = b.address;
        info["irmc_port"] = bmc_port(spec);
    }
    return info;
}

nlohmann::json desired_instance_info(const NodeSpec& spec)
{
    nlohmann::json info = nlohmann::json::object();
    if (!spec.image) {
        return info;
    }
    const auto& img = *spec.image;
    info["image_source"] = img.source;
    auto colon = img.checksum.find(':');
    if (img.checksum.starts_with("http")) {
        info["image_checksum"] = img.checksum;
    } else if (colon != std::string::npos) {
        auto algo = img.checksum.substr(0, colon);
        auto value = img.checksum.substr(colon + 1);
        info["image_checksum"] = value;
        if (algo != "md5") {
            info["image_os_hash_algo"] = algo;
            info["image_os_hash_value"] = value;
        }
    }
    if (!img.kernel.empty()) info["kernel"] = img.kernel;
    if (!img.ramdisk.empty()) info["ramdisk"] = img.ramdisk;
    if (img.root_gib) info["root_gb"] = *img.root_gib;
    return info;
}

std::string config_drive_hash(const NodeSpec& spec)
{
    if (!spec.config_drive) {
        return "none";
    }
    nlohmann::json j = {{"u", spec.config_drive->user_data.value_or("")},
                        {"m", spec.config_drive->meta_data},
                        {"n", spec.config_drive->network_data}};
    return fnv_hex(j.dump());
}

std::string clean_steps_hash(const NodeSpec& spec)
{
    nlohmann::json j = nlohmann::json::array();
    for (const auto& s : spec.clean_steps) {
        j.push_back({s.interface, s.step, s.args});
    }
    return fnv_hex(j.dump());
}

Plan plan_nodes(const PlanInput& input)
{
    Plan plan;
    // One verdict per node, and rarely more than one action: sized up front,
    // neither vector is moved again and again while 10,000 nodes are planned
    // (each move of a megabyte buffer also made malloc consolidate its bins).
    const std::size_t node_count = input.desired.nodes.size() + input.observed.nodes.size();
    plan.actions.reserve(node_count);
    plan.verdicts.reserve(node_count);
    NodePlanner planner{input, plan};
    for (const auto& [name, spec] : input.desired.nodes) {
        auto it = input.observed.nodes.find(name);
        if (it == input.observed.nodes.end()) {
            planner.plan_missing(spec);
        } else if (auto held = input.claimed.find(name); held != input.claimed.end()) {
            planner.plan_claimed(&spec, it->second, held->second);
        } else {
            planner.plan_existing(spec, it->second);
        }
    }
    std::size_t removed_from_git = 0;  // observed nodes not in Git
    for (const auto& [name, node] : input.observed.nodes) {
        if (!input.desired.nodes.contains(name)) {
            if (auto held = input.claimed.find(name); held != input.claimed.end()) {
                planner.plan_claimed(nullptr, node, held->second);
            } else {
                planner.plan_orphan(node);
            }
            ++removed_from_git;
        }
    }

    // Mass-deletion guard: undeploys and deletes of nodes that were active or
    // enrolled, as a share of all nodes metalsync knows.
    std::set<std::string> retiring;
    for (const auto& a : plan.actions) {
        if (a.verb == ActionVerb::delete_node || (a.verb == ActionVerb::undeploy && !a.retry) ||
            (a.verb == ActionVerb::manage && !input.desired.nodes.contains(a.node))) {
            retiring.insert(a.node);
        }
    }
    const std::size_t known = input.desired.nodes.size() + removed_from_git;  // in Git or in Ironic, once each
    const auto& policy = input.desired.policy;
    if (!retiring.empty() && !policy.mass_deletion_allowed && known > 0) {
        double share = 100.0 * static_cast<double>(retiring.size()) / static_cast<double>(known);
        // A single node is never a mass deletion: without this, any undeploy
        // in a fleet of fewer than 100/maxPercent nodes would be held.
        if (share > policy.mass_deletion_max_percent && retiring.size() > 1) {
            plan.mass_deletion_held = true;
            plan.mass_deletion_message =
                "this revision would undeploy or delete " + std::to_string(retiring.size()) + " of " +
                std::to_string(known) + " nodes (" + std::to_string(static_cast<int>(std::lround(share))) +
                "%), more than the Policy's massDeletion.maxPercent of " +
                std::to_string(policy.mass_deletion_max_percent) + "%; held until the Policy sets massDeletion.allow: true";
            std::erase_if(plan.actions, [&](const Action& a) { return retiring.contains(a.node) && (a.verb == ActionVerb::delete_node || a.verb == ActionVerb::undeploy || a.verb == ActionVerb::manage); });
            for (auto& v : plan.verdicts) {
                if (retiring.contains(v.node)) {
                    v.condition = NodeCondition::held;
                    v.message = "undeploy/delete held by the mass-deletion guard";
                }
            }
        }
    }
    if (plan.actions.size() < plan.actions.capacity() / 4) {
        plan.actions.shrink_to_fit();  // a steady tick plans few actions; the plan may be kept a while
    }
    return plan;
}

} // namespace metalsync
