// The pure node planner: desired state, observed Ironic state and the store's
// memory in, one short step per node out. No server, no clock, no database.

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "reconcilers/inspection.hpp"
#include "reconcilers/node_memory_conversion.hpp"
#include "reconcilers/node_planner.hpp"
#include "reconcilers/plan.hpp"
#include "sources/desired_state.hpp"

using namespace metalsync;

namespace {

constexpr const char* k_instance = "metalsync-test";
const std::string k_sha = std::string(64, 'a');

std::string hex2(int i)
{
    const char* digits = "0123456789abcdef";
    return {digits[(i >> 4) & 0xF], digits[i & 0xF]};
}

NodeSpec make_spec(const std::string& name, int index, ProvisionGoal goal = ProvisionGoal::available)
{
    NodeSpec s;
    s.name = name;
    s.bmc.driver = "ipmi";
    s.bmc.address = "10.0.0." + std::to_string(index);
    s.bmc.credentials = "rack1-bmc";
    PortSpec port;
    port.mac = "aa:bb:cc:dd:ee:" + hex2(index);
    port.pxe = true;
    s.ports.push_back(port);
    s.properties = {{"cpu_arch", "x86_64"}, {"capabilities", "boot_mode:uefi"}};
    s.resource_class = "baremetal";
    s.provision_state = goal;
    ImageSpec image;
    image.source = "http://images.example/ubuntu-22.04.qcow2";
    image.checksum = "sha256:" + k_sha;
    s.image = image;
    s.source.file = "nodes/" + name + ".yaml";
    s.source.line = 1;
    return s;
}

// What Ironic reports for a node metalsync enrolled from `spec` and that
// matches it, in provision state `state`.
ObservedNode observe(const NodeSpec& spec, const std::string& state)
{
    ObservedNode o;
    o.uuid = "uuid-" + spec.name;
    o.name = spec.name;
    o.driver = spec.bmc.driver;
    o.provision_state = state;
    o.power_state = state == "active" ? "power on" : "power off";
    o.driver_info = desired_driver_info(spec);
    o.driver_info["ipmi_username"] = "admin";
    o.driver_info["ipmi_password"] = "******";
    o.properties = spec.properties;
    o.resource_class = spec.resource_class;
    o.extra = {{"metalsync", k_instance}};
    o.automated_clean = spec.automated_clean;
    o.maintenance = spec.maintenance;
    if (state == "active") {
        o.instance_info = desired_instance_info(spec);
    }
    for (const auto& p : spec.ports) {
        ObservedPort port;
        port.uuid = "port-" + p.mac;
        port.node_uuid = o.uuid;
        port.mac = p.mac;
        port.pxe_enabled = p.pxe;
        o.ports.push_back(port);
    }
    return o;
}

struct World {
    DesiredState desired;
    ObservedState observed;
    std::map<std::string, NodeMemory> memory;
    std::map<std::string, std::string> secrets;
    std::map<std::string, std::string> claimed;  // node -> why a machine's claim holds it
    double now = 1'700'000'000;

    World() { observed.complete = true; }

    NodeSpec& want(const NodeSpec& spec) { return desired.nodes[spec.name] = spec; }
    ObservedNode& have(const ObservedNode& node) { return observed.nodes[node.name] = node; }
    // Desired and observed, matching, in `state`.
    void both(const NodeSpec& spec, const std::string& state)
    {
        want(spec);
        have(observe(spec, state));
    }
    // `count` more nodes, available and at goal, so that one node's undeploy
    // stays under the mass-deletion guard's share.
    void fillers(int count)
    {
        for (int i = 0; i < count; ++i) {
            both(make_spec("filler-" + std::to_string(i), 100 + i), "available");
        }
    }

    [[nodiscard]] Plan plan() const
    {
        PlanInput input{desired, observed, memory, k_instance, now, secrets, claimed};
        return plan_nodes(input);
    }
};

std::vector<Action> actions_for(const Plan& plan, const std::string& node)
{
    std::vector<Action> out;
    std::copy_if(plan.actions.begin(), plan.actions.end(), std::back_inserter(out),
                 [&](const Action& a) { return a.node == node; });
    return out;
}

const Action* find_action(const Plan& plan, const std::string& node, ActionVerb verb)
{
    auto it = std::find_if(plan.actions.begin(), plan.actions.end(),
                           [&](const Action& a) { return a.node == node && a.verb == verb; });
    return it == plan.actions.end() ? nullptr : &*it;
}

// The only action planned for `node`, which must have verb `verb`. By value:
// callers often pass a temporary plan.
Action only_action(const Plan& plan, const std::string& node, ActionVerb verb)
{
    auto mine = actions_for(plan, node);
    INFO(to_json(plan).dump(2));
    REQUIRE(mine.size() == 1);
    REQUIRE(mine[0].verb == verb);
    return mine[0];
}

NodeVerdict verdict_of(const Plan& plan, const std::string& node)
{
    std::vector<NodeVerdict> mine;
    std::copy_if(plan.verdicts.begin(), plan.verdicts.end(), std::back_inserter(mine),
                 [&](const NodeVerdict& v) { return v.node == node; });
    INFO(to_json(plan).dump(2));
    REQUIRE(mine.size() == 1); // exactly one verdict per node
    return mine[0];
}

bool mentions_secret(const nlohmann::json& j)
{
    const auto text = j.dump();
    return text.find("password") != std::string::npos || text.find("username") != std::string::npos ||
           text.find("******") != std::string::npos;
}

} // namespace

TEST_SUITE("reconcilers")
{

    TEST_CASE("planner: a node missing from Ironic is created with ports and without any password")
    {
        World w;
        auto spec = make_spec("node-01", 1);
        spec.interfaces = {{"boot", "ipxe"}, {"deploy", "direct"}};
        PortSpec second;
        second.mac = "aa:bb:cc:dd:ee:f1";
        second.pxe = false;
        spec.ports.push_back(second);
        w.want(spec);
        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::create_node);
        const auto& node = a.params.at("node");
        CHECK(node.at("name") == "node-01");
        CHECK(node.at("driver") == "ipmi");
        CHECK(node.at("driver_info") == nlohmann::json{{"ipmi_address", "10.0.0.1"}, {"ipmi_port", 623}});
        CHECK(node.at("properties") == spec.properties);
        CHECK(node.at("resource_class") == "baremetal");
        CHECK(node.at("boot_interface") == "ipxe");
        CHECK(node.at("deploy_interface") == "direct");
        CHECK(node.at("extra") == nlohmann::json{{"metalsync", k_instance}});
        CHECK(node.at("automated_clean") == true);
        CHECK_FALSE(mentions_secret(a.params));
        CHECK(a.params.at("credentials") == "rack1-bmc"); // the file name only; the executor reads it
        CHECK(a.params.at("ports") == nlohmann::json::parse(R"([{"address": "aa:bb:cc:dd:ee:01", "pxe_enabled": true},
                                                             {"address": "aa:bb:cc:dd:ee:f1", "pxe_enabled": false}])"));
        CHECK(verdict_of(plan, "node-01").condition == NodeCondition::progressing);
        CHECK_FALSE(plan.mass_deletion_held);
    }

    TEST_CASE("planner: driver_info per driver carries addresses, never secrets")
    {
        auto spec = make_spec("node-01", 1);
        SUBCASE("redfish with an IPv6 address, system id and verify_ca")
        {
            spec.bmc.driver = "redfish";
            spec.bmc.address = "fd00::1";
            spec.bmc.system_id = "/redfish/v1/Systems/1";
            spec.bmc.verify_ca = false;
            CHECK(desired_driver_info(spec) == nlohmann::json{{"redfish_address", "https://[fd00::1]:443"},
                                                              {"redfish_system_id", "/redfish/v1/Systems/1"},
                                                              {"redfish_verify_ca", false}});
        }
        SUBCASE("ipmi on a custom port")
        {
            spec.bmc.port = 6230;
            CHECK(desired_driver_info(spec) == nlohmann::json{{"ipmi_address", "10.0.0.1"}, {"ipmi_port", 6230}});
        }
        SUBCASE("ipmi and fake-hardware with ipmitool credentials default to IPMI's port 623")
        {
            CHECK(desired_driver_info(spec) == nlohmann::json{{"ipmi_address", "10.0.0.1"}, {"ipmi_port", 623}});
            spec.bmc.driver = "fake-hardware";
            spec.bmc.credentials = "bmc-a";
            CHECK(desired_driver_info(spec) == nlohmann::json{{"ipmi_address", "10.0.0.1"}, {"ipmi_port", 623}});
            spec.bmc.driver = "irmc";
            CHECK(desired_driver_info(spec) == nlohmann::json{{"irmc_address", "10.0.0.1"}, {"irmc_port", 443}});
        }
        SUBCASE("fake-hardware without credentials")
        {
            spec.bmc.driver = "fake-hardware";
            spec.bmc.credentials.clear();
            CHECK(desired_driver_info(spec) == nlohmann::json::object());
        }
    }

    TEST_CASE("planner: an enrolled node is made manageable")
    {
        World w;
        w.both(make_spec("node-01", 1), "enroll");
        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::manage);
        CHECK(a.bmc == "10.0.0.1:623");
        CHECK(a.provisioning);
        CHECK_FALSE(a.retry);
        CHECK(verdict_of(plan, "node-01").condition == NodeCondition::progressing);
    }

    TEST_CASE("planner: a manageable node is inspected once, then provided")
    {
        World w;
        auto spec = make_spec("node-01", 1);
        spec.inspect = true;
        w.both(spec, "manageable");
        {
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::inspect);
            CHECK(a.provisioning);
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::progressing);
        }
        w.memory["node-01"].inspected = true;
        {
            // Back in manageable after the inspection: its result is read once.
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::collect_inspection);
            CHECK_FALSE(a.provisioning);
            CHECK(a.bmc.empty()); // an API read, not a BMC action
            CHECK(a.params.at("expect") == expect_key(spec.expect));
        }
        w.memory["node-01"].inspection =
            InspectionMemory{hardware_from_properties({{"cpus", 8}}), expect_key(spec.expect)};
        {
            auto plan = w.plan();
            only_action(plan, "node-01", ActionVerb::provide);
        }
        SUBCASE("without inspection asked for, straight to provide")
        {
            w.memory.clear();
            w.desired.nodes["node-01"].inspect = false;
            only_action(w.plan(), "node-01", ActionVerb::provide);
        }
    }

    TEST_CASE(
        "planner: an inspection that does not meet expect holds the node at manageable; a new expect inspects again")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        spec.inspect = true;
        spec.expect.cpus = 8;
        spec.expect.memory_mib = 16000;
        spec.expect.disks = 1;
        spec.expect.cpu_arch = "x86_64";
        w.both(spec, "manageable");
        auto& mem = w.memory["node-01"];
        mem.inspected = true;
        InspectedHardware small;
        small.source = k_inspection_source_inventory;
        small.cpus = 4;
        small.memory_mib = 8192;
        small.disks = 1;
        small.cpu_arch = "x86_64";
        mem.inspection = InspectionMemory{small, expect_key(spec.expect)};

        auto plan = w.plan();
        CHECK(actions_for(plan, "node-01").empty()); // neither provide, clean nor power
        auto v = verdict_of(plan, "node-01");
        CHECK(v.condition == NodeCondition::failed);
        CHECK(v.message.find("inspection-mismatch") != std::string::npos);
        CHECK(v.message.find("expect.cpus: 8, inspected 4") != std::string::npos);
        CHECK(v.message.find("expect.memoryMiB: 16000, inspected 8192") != std::string::npos);
        CHECK(v.message.find("disks") == std::string::npos);

        SUBCASE("a changed expect is checked against a fresh inspection")
        {
            w.desired.nodes["node-01"].expect.cpus = 4;
            w.desired.nodes["node-01"].expect.memory_mib = 8000;
            auto again = w.plan();
            const auto& a = only_action(again, "node-01", ActionVerb::inspect);
            CHECK(a.reason.find("expect changed") != std::string::npos);
            // The runner's result drops the old inspection; the new one, under the new expect, matches.
            ActionResult requested;
            requested.ok = true;
            requested.inspected = true;
            apply_result(mem, requested);
            CHECK_FALSE(mem.inspection.has_value());
            only_action(w.plan(), "node-01", ActionVerb::collect_inspection);
            ActionResult collected;
            collected.ok = true;
            collected.inspection =
                collected_inspection(k_inspection_source_inventory,
                                     {{"inventory",
                                       {{"cpu", {{"count", 4}, {"architecture", "x86_64"}}},
                                        {"memory", {{"physical_mb", 8192}}},
                                        {"disks", nlohmann::json::array({{{"name", "/dev/sda"}}})}}}},
                                     expect_key(w.desired.nodes["node-01"].expect));
            apply_result(mem, collected);
            only_action(w.plan(), "node-01", ActionVerb::provide);
        }
        SUBCASE("a spec change elsewhere does not lift the hold")
        {
            w.desired.nodes["node-01"].image->source = "http://images.example/other.qcow2";
            auto again = w.plan();
            CHECK(actions_for(again, "node-01").empty());
            CHECK(verdict_of(again, "node-01").condition == NodeCondition::failed);
        }
        SUBCASE("a field inspection cannot report is not a mismatch")
        {
            mem.inspection = InspectionMemory{
                hardware_from_properties({{"cpus", "16"}, {"memory_mb", 16384}, {"cpu_arch", "x86_64"}}),
                expect_key(spec.expect)};
            only_action(w.plan(), "node-01", ActionVerb::provide);
        }
        SUBCASE("without inspect, expect is not checked")
        {
            w.desired.nodes["node-01"].inspect = false;
            only_action(w.plan(), "node-01", ActionVerb::provide);
        }
        SUBCASE("a failed read of the result waits for its backoff")
        {
            mem.inspection.reset();
            mem.next_attempt_at = w.now + 30;
            auto waiting = w.plan();
            CHECK(actions_for(waiting, "node-01").empty());
            CHECK(verdict_of(waiting, "node-01").condition == NodeCondition::waiting);
        }
    }

    TEST_CASE("planner: manual clean steps run once per change of the list")
    {
        World w;
        auto spec = make_spec("node-01", 1);
        CleanStep step;
        step.interface = "deploy";
        step.step = "erase_devices_metadata";
        spec.clean_steps.push_back(step);
        CleanStep raid;
        raid.interface = "raid";
        raid.step = "delete_configuration";
        raid.args = {{"force", true}};
        spec.clean_steps.push_back(raid);
        w.both(spec, "manageable");

        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::clean);
        CHECK(a.params.at("clean_steps") == nlohmann::json::parse(R"([
        {"interface": "deploy", "step": "erase_devices_metadata"},
        {"interface": "raid", "step": "delete_configuration", "args": {"force": true}}])"));
        CHECK(a.params.at("clean_steps_hash") == clean_steps_hash(spec));
        CHECK(a.provisioning);

        w.memory["node-01"].clean_steps_hash = clean_steps_hash(spec);
        SUBCASE("same list already run: provide")
        {
            only_action(w.plan(), "node-01", ActionVerb::provide);
        }
        SUBCASE("same list already run, goal manageable: at goal")
        {
            w.desired.nodes["node-01"].provision_state = ProvisionGoal::manageable;
            auto at_goal = w.plan();
            CHECK(at_goal.actions.empty());
            CHECK(verdict_of(at_goal, "node-01").condition == NodeCondition::at_goal);
        }
        SUBCASE("the list changed: clean again")
        {
            w.desired.nodes["node-01"].clean_steps[1].args = {{"force", false}};
            CHECK(clean_steps_hash(w.desired.nodes["node-01"]) != clean_steps_hash(spec));
            only_action(w.plan(), "node-01", ActionVerb::clean);
        }
    }

    TEST_CASE("planner: an available node with goal active is deployed with instance_info and a config drive")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        spec.image->root_gib = 40;
        ConfigDriveSpec drive;
        drive.user_data = "#!/bin/bash\necho Hello\n";
        drive.meta_data = {{"hostname", "node-01"}};
        spec.config_drive = drive;
        w.both(spec, "available");
        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::deploy);
        CHECK(a.provisioning);
        CHECK_FALSE(a.retry);
        CHECK(a.bmc == "10.0.0.1:623");
        CHECK(a.params.at("instance_info") ==
              nlohmann::json{{"image_source", "http://images.example/ubuntu-22.04.qcow2"},
                             {"image_checksum", k_sha},
                             {"image_os_hash_algo", "sha256"},
                             {"image_os_hash_value", k_sha},
                             {"root_gb", 40}});
        CHECK(a.params.at("configdrive") ==
              nlohmann::json{{"user_data", "#!/bin/bash\necho Hello\n"}, {"meta_data", {{"hostname", "node-01"}}}});
        CHECK(a.params.at("config_drive_hash") == config_drive_hash(spec));
        CHECK(verdict_of(plan, "node-01").condition == NodeCondition::progressing);
    }

    TEST_CASE("planner: instance_info maps each checksum form")
    {
        auto spec = make_spec("node-01", 1);
        SUBCASE("md5 has no os_hash")
        {
            spec.image->checksum = "md5:" + std::string(32, 'b');
            auto info = desired_instance_info(spec);
            CHECK(info.at("image_checksum") == std::string(32, 'b'));
            CHECK_FALSE(info.contains("image_os_hash_algo"));
        }
        SUBCASE("a checksum file URL is passed as is")
        {
            spec.image->checksum = "http://images.example/SHA256SUMS";
            auto info = desired_instance_info(spec);
            CHECK(info.at("image_checksum") == "http://images.example/SHA256SUMS");
            CHECK_FALSE(info.contains("image_os_hash_value"));
        }
        SUBCASE("partition image")
        {
            spec.image->kernel = "http://images.example/vmlinuz";
            spec.image->ramdisk = "http://images.example/initrd";
            auto info = desired_instance_info(spec);
            CHECK(info.at("kernel") == "http://images.example/vmlinuz");
            CHECK(info.at("ramdisk") == "http://images.example/initrd");
        }
    }

    TEST_CASE("planner: an active node at goal needs nothing; a new image or config drive rebuilds it")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        w.both(spec, "active");
        w.memory["node-01"].config_drive_hash = config_drive_hash(spec);
        w.memory["node-01"].was_active = true;
        {
            auto plan = w.plan();
            CHECK(plan.actions.empty());
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::at_goal);
        }
        SUBCASE("new image")
        {
            w.desired.nodes["node-01"].image->source = "http://images.example/ubuntu-24.04.qcow2";
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::rebuild);
            CHECK(a.params.at("instance_info").at("image_source") == "http://images.example/ubuntu-24.04.qcow2");
            CHECK(a.provisioning);
            CHECK(find_action(plan, "node-01", ActionVerb::deploy) == nullptr);
        }
        SUBCASE("new config drive")
        {
            ConfigDriveSpec drive;
            drive.user_data = "#cloud-config\n";
            w.desired.nodes["node-01"].config_drive = drive;
            only_action(w.plan(), "node-01", ActionVerb::rebuild);
        }
    }

    TEST_CASE("planner: an active node whose goal is available is undeployed")
    {
        World w;
        w.fillers(5);
        w.both(make_spec("node-01", 1, ProvisionGoal::available), "active");
        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::undeploy);
        CHECK(a.provisioning);
        CHECK_FALSE(a.retry);
        CHECK_FALSE(plan.mass_deletion_held);
        CHECK(plan.actions.size() == 1); // the fillers are at goal
        CHECK(verdict_of(plan, "filler-0").condition == NodeCondition::at_goal);
    }

    TEST_CASE("planner: a node a Cluster API machine's claim holds is the provider's to provision")
    {
        World w;
        w.fillers(5);
        const std::string why = "claimed by MetalsyncMachine default/w1 (cluster metal)";
        auto spec = make_spec("node-01", 1, ProvisionGoal::available);
        w.both(spec, "active");  // Git's pool goal is available; a machine runs on it
        w.claimed["node-01"] = why;

        SUBCASE("never undeployed, never given instance_info, reported as claimed")
        {
            auto plan = w.plan();
            CHECK(actions_for(plan, "node-01").empty());
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::claimed);
            CHECK(verdict_of(plan, "node-01").message == why);
        }
        SUBCASE("while Ironic deploys it: no action")
        {
            w.observed.nodes["node-01"].provision_state = "deploying";
            auto plan = w.plan();
            CHECK(actions_for(plan, "node-01").empty());
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::claimed);
        }
        SUBCASE("Git still governs its BMC and ports")
        {
            spec.bmc.address = "192.0.2.222";
            spec.ports.push_back({"52:54:00:00:09:99", true, ""});
            w.want(spec);
            auto plan = w.plan();
            const auto actions = actions_for(plan, "node-01");
            REQUIRE(actions.size() == 2);
            CHECK(actions[0].verb == ActionVerb::update_node);
            CHECK(actions[0].params["patch"].dump().find("192.0.2.222") != std::string::npos);
            CHECK(actions[0].params["patch"].dump().find("instance_info") == std::string::npos);
            CHECK(actions[1].verb == ActionVerb::create_port);
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::progressing);
        }
        SUBCASE("its automated_clean is the machine's while it is claimed")
        {
            w.observed.nodes["node-01"].automated_clean = false;  // the machine's automatedCleaning: false
            auto plan = w.plan();
            CHECK(actions_for(plan, "node-01").empty());
            w.claimed.clear();
            w.desired.nodes["node-01"].provision_state = ProvisionGoal::active;  // released and redeployed by Git
            plan = w.plan();
            const auto actions = actions_for(plan, "node-01");
            REQUIRE_FALSE(actions.empty());
            CHECK(actions[0].params["patch"].dump().find("automated_clean") != std::string::npos);
        }
        SUBCASE("removed from Git with prune on: held, never retired")
        {
            w.desired.policy.prune = true;
            w.desired.nodes.erase("node-01");
            auto plan = w.plan();
            CHECK(actions_for(plan, "node-01").empty());
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::claimed);
        }
        SUBCASE("without the claim, the same node is undeployed (Git's word)")
        {
            w.claimed.clear();
            auto plan = w.plan();
            CHECK(only_action(plan, "node-01", ActionVerb::undeploy).provisioning);
        }
    }

    TEST_CASE("planner: Ironic busy states get no action")
    {
        for (const char* state : {"cleaning", "clean wait", "inspecting", "inspect wait", "deploying", "wait call-back",
                                  "verifying", "deleting", "adopting", "rebuilding"}) {
            INFO(state);
            CHECK(is_busy_state(state));
            World w;
            auto spec = make_spec("node-01", 1, ProvisionGoal::active);
            w.both(spec, state);
            // Even drift waits until Ironic is done.
            w.observed.nodes["node-01"].properties["cpu_arch"] = "aarch64";
            w.observed.nodes["node-01"].target_provision_state = "active";
            auto plan = w.plan();
            CHECK(plan.actions.empty());
            auto v = verdict_of(plan, "node-01");
            CHECK(v.condition == NodeCondition::progressing);
            CHECK(v.message.find(state) != std::string::npos);
        }
        CHECK_FALSE(is_busy_state("active"));
        CHECK_FALSE(is_busy_state("deploy failed"));
    }

    TEST_CASE("planner: deploy failed is retried a bounded number of times, with backoff")
    {
        World w;
        w.desired.policy.max_retries = 3;
        w.both(make_spec("node-01", 1, ProvisionGoal::active), "deploy failed");
        w.observed.nodes["node-01"].last_error = "Timeout reached while waiting for callback for node";
        auto& mem = w.memory["node-01"];

        SUBCASE("attempts below the cap: deploy again, marked retry")
        {
            mem.attempts = 2;
            mem.next_attempt_at = w.now - 1;
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::deploy);
            CHECK(a.retry);
            CHECK(a.provisioning);
            CHECK(a.params.contains("instance_info"));
            auto v = verdict_of(plan, "node-01");
            CHECK(v.condition == NodeCondition::progressing);
            CHECK(v.message.find("retry 3 of 3") != std::string::npos);
        }
        SUBCASE("no memory yet: the first retry")
        {
            w.memory.clear();
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::deploy);
            CHECK(a.retry);
        }
        SUBCASE("out of attempts: failed, with Ironic's message")
        {
            mem.attempts = 3;
            auto plan = w.plan();
            CHECK(plan.actions.empty());
            auto v = verdict_of(plan, "node-01");
            CHECK(v.condition == NodeCondition::failed);
            CHECK(v.message.find("Timeout reached while waiting for callback") != std::string::npos);
            CHECK(v.message.find("3 attempts") != std::string::npos);
        }
        SUBCASE("in backoff: waiting")
        {
            mem.attempts = 1;
            mem.next_attempt_at = w.now + 60;
            auto plan = w.plan();
            CHECK(plan.actions.empty());
            auto v = verdict_of(plan, "node-01");
            CHECK(v.condition == NodeCondition::waiting);
            CHECK(v.message.find("Timeout reached") != std::string::npos);
        }
        SUBCASE("goal no longer active: undeploy, as a retry outside the mass-deletion guard")
        {
            w.desired.nodes["node-01"].provision_state = ProvisionGoal::available;
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::undeploy);
            CHECK(a.retry);
            CHECK_FALSE(plan.mass_deletion_held);
        }
    }

    TEST_CASE("planner: a spec change resets the attempt count of a failed node")
    {
        World w;
        w.both(make_spec("node-01", 1, ProvisionGoal::active), "deploy failed");
        auto& mem = w.memory["node-01"];
        mem.attempts = 5;
        mem.next_attempt_at = w.now + 600;
        mem.spec_hash = spec_hash(w.desired.nodes["node-01"]);
        CHECK(verdict_of(w.plan(), "node-01").condition == NodeCondition::failed);

        // The user fixes the image in Git: the old count and backoff no longer apply.
        w.desired.nodes["node-01"].image->source = "http://images.example/fixed.qcow2";
        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::deploy);
        CHECK(a.retry);
        CHECK(a.params.at("instance_info").at("image_source") == "http://images.example/fixed.qcow2");
    }

    TEST_CASE("planner: clean failed and inspect failed go back to manageable")
    {
        for (const char* state : {"clean failed", "inspect failed"}) {
            INFO(state);
            World w;
            w.both(make_spec("node-01", 1), state);
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::manage);
            CHECK(a.retry);
            CHECK_FALSE(plan.mass_deletion_held);
        }
    }

    TEST_CASE("planner: maintenance follows Git")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        SUBCASE("on")
        {
            spec.maintenance = true;
            spec.maintenance_reason = "disk replacement";
            w.want(spec);
            auto o = observe(spec, "available");
            o.maintenance = false;
            w.have(o);
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::set_maintenance);
            CHECK(a.params == nlohmann::json{{"maintenance", true}, {"reason", "disk replacement"}});
            CHECK(find_action(plan, "node-01", ActionVerb::deploy) == nullptr);
        }
        SUBCASE("on, already in maintenance: no provisioning step")
        {
            spec.maintenance = true;
            spec.maintenance_reason = "disk replacement";
            w.want(spec);
            auto o = observe(spec, "available");
            o.maintenance_reason = "disk replacement";
            w.have(o);
            auto plan = w.plan();
            CHECK(plan.actions.empty());
            CHECK(verdict_of(plan, "node-01").condition == NodeCondition::maintenance);
        }
        SUBCASE("off")
        {
            w.want(spec);
            auto o = observe(spec, "active");
            o.maintenance = true;
            o.maintenance_reason = "set by hand";
            w.have(o);
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::set_maintenance);
            CHECK(a.params.at("maintenance") == false);
        }
    }

    TEST_CASE("planner: drift from Git is patched back")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        w.both(spec, "active");
        w.memory["node-01"].config_drive_hash = config_drive_hash(spec);
        auto& o = w.observed.nodes["node-01"];

        SUBCASE("properties")
        {
            o.properties["cpu_arch"] = "aarch64";
            o.properties.erase("capabilities");
            o.properties["memory_mb"] = 4096; // set by inspection: not ours to remove
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::update_node);
            CHECK(a.params.at("patch") == nlohmann::json::parse(R"([
            {"op": "add", "path": "/properties/capabilities", "value": "boot_mode:uefi"},
            {"op": "replace", "path": "/properties/cpu_arch", "value": "x86_64"}])"));
            CHECK(a.params.at("credentials") == "");
            CHECK(a.reason.find("properties.cpu_arch") != std::string::npos);
        }
        SUBCASE("driver_info address, with the masked password left alone")
        {
            o.driver_info["ipmi_address"] = "10.9.9.9";
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::update_node);
            CHECK(a.params.at("patch") == nlohmann::json::parse(R"([
            {"op": "replace", "path": "/driver_info/ipmi_address", "value": "10.0.0.1"}])"));
            CHECK_FALSE(mentions_secret(a.params));
        }
        SUBCASE("resource class and interfaces")
        {
            o.resource_class = "old";
            w.desired.nodes["node-01"].interfaces = {{"boot", "ipxe"}};
            o.interfaces = {{"boot", "pxe"}};
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::update_node);
            CHECK(a.params.at("patch") == nlohmann::json::parse(R"([
            {"op": "replace", "path": "/resource_class", "value": "baremetal"},
            {"op": "replace", "path": "/boot_interface", "value": "ipxe"}])"));
        }
        SUBCASE("a port missing in Ironic")
        {
            o.ports.clear();
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::create_port);
            CHECK(a.params == nlohmann::json{{"node_uuid", "uuid-node-01"},
                                             {"address", "aa:bb:cc:dd:ee:01"},
                                             {"pxe_enabled", true}});
        }
        SUBCASE("a port Git does not declare")
        {
            ObservedPort extra;
            extra.uuid = "port-extra";
            extra.mac = "aa:bb:cc:dd:ee:99";
            o.ports.push_back(extra);
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::delete_port);
            CHECK(a.params.at("uuid") == "port-extra");
        }
        SUBCASE("pxe_enabled")
        {
            o.ports[0].pxe_enabled = false;
            const auto& a = only_action(w.plan(), "node-01", ActionVerb::update_port);
            CHECK(a.params.at("uuid") == "port-aa:bb:cc:dd:ee:01");
            CHECK(a.params.at("patch") ==
                  nlohmann::json::parse(R"([{"op": "replace", "path": "/pxe_enabled", "value": true}])"));
        }
        SUBCASE("drift alone is progress, not at goal")
        {
            o.properties["cpu_arch"] = "aarch64";
            CHECK(verdict_of(w.plan(), "node-01").condition == NodeCondition::progressing);
        }
    }

    TEST_CASE("planner: credentials whose hash differs from the applied one are written again")
    {
        World w;
        auto spec = make_spec("node-01", 1);
        w.both(spec, "available");
        w.secrets["node-01"] = "hmac-new";
        SUBCASE("rotated")
        {
            w.memory["node-01"].applied_secret_hash = "hmac-old";
            auto plan = w.plan();
            const auto& a = only_action(plan, "node-01", ActionVerb::update_node);
            CHECK(a.params.at("credentials") == "rack1-bmc");
            CHECK(a.params.at("secret_hash") == "hmac-new");
            CHECK(a.params.at("patch").empty());
            // Credentials are never in Git: the message does not say they differ from it.
            CHECK(a.reason == "credentials file rack1-bmc changed since it was written");
        }
        SUBCASE("never written")
        {
            auto plan = w.plan();
            CHECK(only_action(plan, "node-01", ActionVerb::update_node).reason ==
                  "credentials file rack1-bmc not written to Ironic yet");
        }
        SUBCASE("unchanged")
        {
            w.memory["node-01"].applied_secret_hash = "hmac-new";
            CHECK(w.plan().actions.empty());
        }
        SUBCASE("unreadable (empty hash): nothing to compare, no write")
        {
            w.secrets["node-01"] = "";
            w.memory["node-01"].applied_secret_hash = "hmac-old";
            CHECK(w.plan().actions.empty());
        }
    }

    TEST_CASE("planner: nodes in Ironic but not in Git")
    {
        World w;
        w.fillers(10);
        auto gone = make_spec("gone", 1);

        SUBCASE("not enrolled by metalsync: reported, never touched, even with prune on")
        {
            w.desired.policy.prune = true;
            auto o = observe(gone, "active");
            o.extra = {{"owner", "someone else"}};
            w.have(o);
            auto plan = w.plan();
            CHECK(actions_for(plan, "gone").empty());
            CHECK(verdict_of(plan, "gone").condition == NodeCondition::orphaned);
        }
        SUBCASE("enrolled by another metalsync instance")
        {
            w.desired.policy.prune = true;
            auto o = observe(gone, "manageable");
            o.extra = {{"metalsync", "another-instance"}};
            w.have(o);
            auto plan = w.plan();
            CHECK(actions_for(plan, "gone").empty());
            CHECK(verdict_of(plan, "gone").condition == NodeCondition::orphaned);
        }
        SUBCASE("ours, prune off: reported, left in Ironic")
        {
            w.have(observe(gone, "active"));
            auto plan = w.plan();
            CHECK(actions_for(plan, "gone").empty());
            auto v = verdict_of(plan, "gone");
            CHECK(v.condition == NodeCondition::orphaned);
            CHECK(v.message.find("prune is off") != std::string::npos);
        }
        SUBCASE("ours, prune on: retired through its lifecycle")
        {
            w.desired.policy.prune = true;
            struct Step {
                const char* state;
                ActionVerb verb;
            };
            for (auto step : {Step{"active", ActionVerb::undeploy}, Step{"deploy failed", ActionVerb::undeploy},
                              Step{"available", ActionVerb::manage}, Step{"clean failed", ActionVerb::manage},
                              Step{"inspect failed", ActionVerb::manage}, Step{"manageable", ActionVerb::delete_node},
                              Step{"enroll", ActionVerb::delete_node}}) {
                INFO(step.state);
                w.have(observe(gone, step.state));
                auto plan = w.plan();
                const auto& a = only_action(plan, "gone", step.verb);
                if (step.verb == ActionVerb::delete_node) {
                    CHECK(a.params.at("uuid") == "uuid-gone");
                }
                CHECK(verdict_of(plan, "gone").condition == NodeCondition::progressing);
                CHECK_FALSE(plan.mass_deletion_held);
            }
        }
        SUBCASE("ours, prune on, busy: wait")
        {
            w.desired.policy.prune = true;
            w.have(observe(gone, "cleaning"));
            auto plan = w.plan();
            CHECK(actions_for(plan, "gone").empty());
            CHECK(verdict_of(plan, "gone").condition == NodeCondition::progressing);
        }
        SUBCASE("ours, prune on, in maintenance: leave maintenance first")
        {
            w.desired.policy.prune = true;
            auto o = observe(gone, "active");
            o.maintenance = true;
            w.have(o);
            only_action(w.plan(), "gone", ActionVerb::set_maintenance);
        }
    }

    TEST_CASE("planner: retiring a single node is never held by the mass-deletion guard")
    {
        World w;
        w.desired.policy.prune = true;
        w.desired.policy.mass_deletion_max_percent = 20;
        for (int i = 0; i < 2; ++i) {
            auto spec = make_spec("node-" + std::to_string(i), i + 1, ProvisionGoal::active);
            w.both(spec, "active");
            w.memory[spec.name].config_drive_hash = config_drive_hash(spec);
        }
        w.desired.nodes.erase("node-1");  // 1 of 2 = 50% > 20%, but a single node
        auto plan = w.plan();
        CHECK_FALSE(plan.mass_deletion_held);
        only_action(plan, "node-1", ActionVerb::undeploy);
    }

    TEST_CASE("planner: the mass-deletion guard holds a revision that removes too many nodes")
    {
        World w;
        w.desired.policy.prune = true;
        w.desired.policy.mass_deletion_max_percent = 20;
        for (int i = 0; i < 10; ++i) {
            auto spec = make_spec("node-" + std::to_string(i), i + 1, ProvisionGoal::active);
            w.both(spec, "active");
            w.memory[spec.name].config_drive_hash = config_drive_hash(spec);
        }
        // Three of ten removed from Git (30% > 20%): one active, one available, one manageable.
        w.desired.nodes.erase("node-0");
        w.desired.nodes.erase("node-1");
        w.desired.nodes.erase("node-2");
        w.observed.nodes["node-1"].provision_state = "available";
        w.observed.nodes["node-2"].provision_state = "manageable";

        SUBCASE("held")
        {
            auto plan = w.plan();
            CHECK(plan.mass_deletion_held);
            CHECK(plan.mass_deletion_message.find("3 of 10 nodes (30%)") != std::string::npos);
            CHECK(plan.actions.empty());
            for (const char* n : {"node-0", "node-1", "node-2"}) {
                CHECK(verdict_of(plan, n).condition == NodeCondition::held);
            }
            CHECK(verdict_of(plan, "node-5").condition == NodeCondition::at_goal);
            CHECK(to_json(plan).contains("massDeletionHeld"));
        }
        SUBCASE("allowed by the Policy")
        {
            w.desired.policy.mass_deletion_allowed = true;
            auto plan = w.plan();
            CHECK_FALSE(plan.mass_deletion_held);
            CHECK(plan.actions.size() == 3);
            only_action(plan, "node-0", ActionVerb::undeploy);
            only_action(plan, "node-1", ActionVerb::manage);
            only_action(plan, "node-2", ActionVerb::delete_node);
        }
        SUBCASE("a higher maxPercent")
        {
            w.desired.policy.mass_deletion_max_percent = 30;
            CHECK_FALSE(w.plan().mass_deletion_held);
        }
        SUBCASE("every node in Git or in Ironic counts once: nodes not enrolled yet too")
        {
            for (int i = 10; i < 12; ++i) {
                auto spec = make_spec("node-" + std::to_string(i), i + 1, ProvisionGoal::available);
                w.desired.nodes[spec.name] = spec;
            }
            auto plan = w.plan();
            CHECK(plan.mass_deletion_held);
            CHECK(plan.mass_deletion_message.find("3 of 12 nodes (25%)") != std::string::npos);
            CHECK(plan.actions.size() == 2);  // the two enrollments go on
        }
        SUBCASE("goal changes count too: undeploying 3 of 10 by Git is held")
        {
            w.desired.policy.prune = false;
            for (int i = 0; i < 3; ++i) {
                auto spec = make_spec("node-" + std::to_string(i), i + 1, ProvisionGoal::available);
                w.desired.nodes[spec.name] = spec;
                w.observed.nodes[spec.name] = observe(spec, "active");
            }
            auto plan = w.plan();
            CHECK(plan.mass_deletion_held);
            CHECK(plan.actions.empty());
        }
    }

    TEST_CASE("planner: a node Ironic lost while active is adopted, never deployed again")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        w.want(spec);
        w.memory["node-01"].was_active = true;
        w.memory["node-01"].uuid = "uuid-before-ironic-lost-its-db";
        auto plan = w.plan();
        const auto& a = only_action(plan, "node-01", ActionVerb::adopt_node);
        CHECK(a.params.at("instance_info") == desired_instance_info(spec));
        CHECK(a.params.at("node").at("name") == "node-01");
        CHECK(a.params.at("ports").size() == 1);
        CHECK_FALSE(mentions_secret(a.params));
        CHECK(find_action(plan, "node-01", ActionVerb::deploy) == nullptr);
        CHECK(find_action(plan, "node-01", ActionVerb::create_node) == nullptr);
        CHECK(verdict_of(plan, "node-01").condition == NodeCondition::progressing);

        SUBCASE("adopt failed is retried as an adoption")
        {
            w.have(observe(spec, "adopt failed"));
            const auto& retry = only_action(w.plan(), "node-01", ActionVerb::adopt_node);
            CHECK(retry.retry);
        }
        SUBCASE("re-enrolled and manageable, it is adopted before any inspection, cleaning or provide")
        {
            auto& wanted = w.desired.nodes.at("node-01");
            wanted.inspect = true;
            wanted.clean_steps.push_back(CleanStep{"deploy", "erase_devices_metadata", nlohmann::json::object()});
            w.have(observe(wanted, "manageable"));
            const auto adopt = only_action(w.plan(), "node-01", ActionVerb::adopt_node);
            CHECK_FALSE(adopt.params.contains("node"));  // the adopt stage, not a second enrolment
            CHECK(adopt.params.at("instance_info") == desired_instance_info(wanted));
            CHECK(adopt.provisioning);
            CHECK_FALSE(adopt.retry);

            // Once adopted (or never active), manageable means the usual path.
            w.memory["node-01"].was_active = false;
            const auto plan_after = w.plan();
            CHECK(find_action(plan_after, "node-01", ActionVerb::adopt_node) == nullptr);
            CHECK(find_action(plan_after, "node-01", ActionVerb::inspect) != nullptr);
        }
    }

    TEST_CASE("planner: power follows Git once the node is at its provision goal")
    {
        World w;
        auto spec = make_spec("node-01", 1, ProvisionGoal::active);
        spec.power = PowerGoal::off;
        w.both(spec, "active");
        w.memory["node-01"].config_drive_hash = config_drive_hash(spec);
        const auto& a = only_action(w.plan(), "node-01", ActionVerb::set_power);
        CHECK(a.params.at("target") == "power off");
        SUBCASE("a power change already under way")
        {
            w.observed.nodes["node-01"].target_power_state = "power off";
            CHECK(w.plan().actions.empty());
        }
    }

    TEST_CASE("planner: a node locked by a conductor waits")
    {
        World w;
        w.both(make_spec("node-01", 1, ProvisionGoal::active), "available");
        w.observed.nodes["node-01"].reservation = "conductor-1";
        auto plan = w.plan();
        CHECK(plan.actions.empty());
        CHECK(verdict_of(plan, "node-01").condition == NodeCondition::waiting);
    }

    TEST_CASE("planner: the plan is deterministic")
    {
        World w;
        w.desired.policy.prune = true;
        w.desired.policy.mass_deletion_allowed = true;
        const char* states[] = {"enroll", "manageable", "available", "active", "deploy failed", "clean wait"};
        for (int i = 0; i < 12; ++i) {
            auto spec = make_spec("node-" + std::to_string(i), i + 1,
                                  i % 2 == 0 ? ProvisionGoal::active : ProvisionGoal::available);
            spec.inspect = i % 3 == 0;
            w.want(spec);
            if (i < 10) {
                auto o = observe(spec, states[i % 6]);
                o.properties["cpu_arch"] = i % 4 == 0 ? "aarch64" : "x86_64";
                w.have(o);
            }
        }
        w.have(observe(make_spec("orphan-a", 50), "active"));
        w.have(observe(make_spec("orphan-b", 51), "manageable"));
        w.secrets["node-3"] = "h";
        auto first = to_json(w.plan()).dump();
        auto second = to_json(w.plan()).dump();
        CHECK(first == second);
        auto plan = w.plan();
        CHECK(plan.verdicts.size() == 14); // one per node, desired or observed
        CHECK_FALSE(plan.actions.empty());
    }

    TEST_CASE("planner: hashes notice what they must")
    {
        auto spec = make_spec("node-01", 1);
        CHECK(config_drive_hash(spec) == "none");
        ConfigDriveSpec drive;
        drive.user_data = "a";
        spec.config_drive = drive;
        auto h1 = config_drive_hash(spec);
        spec.config_drive->meta_data = {{"k", "v"}};
        CHECK(config_drive_hash(spec) != h1);
        auto empty_steps = clean_steps_hash(spec);
        CleanStep s;
        s.interface = "deploy";
        s.step = "erase_devices";
        spec.clean_steps.push_back(s);
        CHECK(clean_steps_hash(spec) != empty_steps);
        CHECK(to_string(ActionVerb::delete_node) == std::string("delete"));
        CHECK(to_string(NodeCondition::held) == std::string("held"));
    }

} // TEST_SUITE
