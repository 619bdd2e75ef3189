// The MetalsyncMachine and MetalsyncCluster status built from claim
// decisions: metav1 Conditions (lastTransitionTime kept while the status does
// not change), initialization.provisioned and the v1beta1 ready, the terminal
// failure fields where both Cluster API contracts read them, and a JSON body
// that reads back the same and only uses fields the CRDs declare.

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "reconcilers/provider/conditions.hpp"

using namespace metalsync::provider;

namespace {

ClaimDecision decision(ClaimStep step, const std::string& node, const char* reason, const std::string& message)
{
    ClaimDecision d;
    d.step = step;
    d.node = node;
    d.reason = reason;
    d.message = message;
    return d;
}

ClaimDecision claim(const std::string& node)
{
    ClaimDecision d = decision(ClaimStep::claim, node, k_reason_node_claimed, "claiming node " + node);
    d.writes.store = d.writes.instance_uuid = d.writes.status_node = true;
    d.failure_domain = "rack1";
    return d;
}

ClaimDecision provisioned(const std::string& node)
{
    ClaimDecision d = decision(ClaimStep::report_provisioned, node, k_reason_provisioned, "node " + node + " is deployed");
    d.provider_id = "metalsync://site-a/" + node;
    d.addresses = {{"Hostname", "m1"}, {"InternalIP", "10.0.10.21"}};
    d.failure_domain = "rack1";
    return d;
}

const Condition& cond(const MachineStatus& s, const char* type)
{
    const Condition* c = find_condition(s.conditions, type);
    REQUIRE_MESSAGE(c != nullptr, "no condition " << type);
    return *c;
}

YAML::Node crd(const std::string& file)
{
    return YAML::LoadFile(std::string(METALSYNC_SOURCE_DIR) + "/schemas/crds/" + file);
}

// Every key of `value` is declared in `schema` (an openAPIV3Schema node), all
// the way down: what the API server would otherwise prune or refuse.
void check_declared(const nlohmann::json& value, const YAML::Node& schema, const std::string& path)
{
    if (value.is_object()) {
        const YAML::Node props = schema["properties"];
        for (const auto& [key, sub] : value.items()) {
            INFO(path << "." << key);
            REQUIRE(props);
            REQUIRE(props[key]);
            check_declared(sub, props[key], path + "." + key);
        }
    } else if (value.is_array()) {
        CHECK(schema["type"].as<std::string>() == "array");
        for (const auto& item : value) {
            check_declared(item, schema["items"], path + "[]");
        }
    } else if (value.is_string()) {
        CHECK_MESSAGE(schema["type"].as<std::string>() == "string", path);
    } else if (value.is_boolean()) {
        CHECK_MESSAGE(schema["type"].as<std::string>() == "boolean", path);
    } else if (value.is_number_integer()) {
        CHECK_MESSAGE(schema["type"].as<std::string>() == "integer", path);
    }
}

} // namespace

TEST_CASE("set_condition keeps lastTransitionTime while the status does not change")
{
    std::vector<Condition> cs;
    set_condition(cs, {"Ready", "False", "NoFreeNode", "3 match, 0 free", 1, ""}, "t1");
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].last_transition_time == "t1");

    set_condition(cs, {"Ready", "False", "NodeClaimed", "claiming", 2, ""}, "t2");
    CHECK(cs[0].last_transition_time == "t1");  // still False
    CHECK(cs[0].reason == "NodeClaimed");
    CHECK(cs[0].message == "claiming");
    CHECK(cs[0].observed_generation == 2);

    set_condition(cs, {"Ready", "True", "Provisioned", "", 2, ""}, "t3");
    CHECK(cs[0].last_transition_time == "t3");
    CHECK(cs.size() == 1);

    set_condition(cs, {"Paused", "False", "NotPaused", "", 2, ""}, "t4");
    CHECK(cs.size() == 2);
    CHECK(find_condition(cs, "Paused")->last_transition_time == "t4");
}

TEST_CASE("machine status through a life: waiting, claimed, provisioned, released")
{
    MachineStatus s;
    s = machine_status(decision(ClaimStep::wait, "", k_reason_waiting_for_bootstrap, "waiting for the bootstrap data"),
                       s, 1, "t1");
    CHECK(cond(s, "Ready").status == "False");
    CHECK(cond(s, "Ready").reason == "WaitingForBootstrapData");
    CHECK(cond(s, "Ready").message == "waiting for the bootstrap data");
    CHECK(cond(s, "Provisioned").status == "False");
    CHECK(cond(s, "Paused").status == "False");
    CHECK(cond(s, "Paused").reason == "NotPaused");
    CHECK_FALSE(s.provisioned);
    CHECK_FALSE(s.ready);
    CHECK(s.node.empty());

    s = machine_status(claim("w-01"), s, 1, "t2");
    CHECK(s.node == "w-01");
    CHECK(s.failure_domain == "rack1");
    CHECK(cond(s, "Ready").reason == "NodeClaimed");
    CHECK(cond(s, "Ready").last_transition_time == "t1");

    s = machine_status(provisioned("w-01"), s, 1, "t3");
    CHECK(s.provisioned == true);
    CHECK(s.ready);
    CHECK(s.addresses.size() == 2);
    CHECK(cond(s, "Ready").status == "True");
    CHECK(cond(s, "Ready").last_transition_time == "t3");
    CHECK(cond(s, "Provisioned").status == "True");

    s = machine_status(decision(ClaimStep::in_sync, "w-01", k_reason_provisioned, "running on node w-01"), s, 2, "t4");
    CHECK(cond(s, "Ready").last_transition_time == "t3");
    CHECK(cond(s, "Ready").observed_generation == 2);

    s = machine_status(decision(ClaimStep::release, "w-01", k_reason_releasing, "undeploying node w-01"), s, 2, "t5");
    CHECK(cond(s, "Ready").status == "False");
    CHECK(cond(s, "Ready").reason == "Releasing");
    CHECK(cond(s, "Ready").last_transition_time == "t5");
    CHECK(cond(s, "Provisioned").status == "False");
    CHECK(s.provisioned == true);  // initialization completed once: never taken back
    CHECK(s.ready);
    CHECK(s.node == "w-01");

    ClaimDecision forget = decision(ClaimStep::forget, "w-01", k_reason_released, "node w-01 is back in its pool");
    forget.writes.clear_status_node = true;
    forget.writes.drop_store = true;
    s = machine_status(forget, s, 2, "t6");
    CHECK(s.node.empty());
    CHECK(s.failure_domain.empty());
    CHECK(cond(s, "Ready").reason == "Released");
}

TEST_CASE("terminal failures are written where both contracts read them, and cleared")
{
    ClaimDecision failed = decision(ClaimStep::failed, "w-01", k_reason_deploy_failed, "deploying node w-01 failed: 404");
    failed.failure_reason = "CreateError";
    MachineStatus s = machine_status(failed, MachineStatus{}, 1, "t1");
    CHECK(s.failure_reason == "CreateError");
    CHECK(cond(s, "Ready").reason == "DeployFailed");

    nlohmann::json j = to_json(s);
    CHECK(j["failureReason"] == "CreateError");
    CHECK(j["failureMessage"] == "deploying node w-01 failed: 404");
    CHECK(j["deprecated"]["v1beta1"]["failureReason"] == "CreateError");
    CHECK(j["deprecated"]["v1beta1"]["failureMessage"] == "deploying node w-01 failed: 404");

    s = machine_status(decision(ClaimStep::wait, "w-01", k_reason_deploying, "deploying"), s, 1, "t2");
    CHECK(s.failure_reason.empty());
    nlohmann::json cleared = to_json(s);
    CHECK_FALSE(cleared.contains("failureReason"));
    CHECK_FALSE(cleared.contains("deprecated"));
}

TEST_CASE("paused: only the Paused condition changes")
{
    MachineStatus s = machine_status(provisioned("w-01"), MachineStatus{}, 1, "t1");
    const Condition ready = cond(s, "Ready");
    ClaimDecision paused = decision(ClaimStep::wait, "w-01", k_reason_paused, "reconciliation is paused");
    s = machine_status(paused, s, 3, "t2");
    CHECK(cond(s, "Paused").status == "True");
    CHECK(cond(s, "Paused").reason == "Paused");
    CHECK(cond(s, "Paused").last_transition_time == "t2");
    CHECK(cond(s, "Ready") == ready);
    CHECK(s.ready);

    s = machine_status(decision(ClaimStep::in_sync, "w-01", k_reason_provisioned, "running"), s, 3, "t3");
    CHECK(cond(s, "Paused").status == "False");
    CHECK(cond(s, "Paused").last_transition_time == "t3");
}

TEST_CASE("a repaired claim does not flap a running machine; a conflict is loud")
{
    MachineStatus s = machine_status(provisioned("w-01"), MachineStatus{}, 1, "t1");
    ClaimDecision adopt = decision(ClaimStep::adopt, "w-01", k_reason_claim_restored,
                                   "claim on node w-01 restored in metalsync's store");
    adopt.writes.store = true;
    s = machine_status(adopt, s, 1, "t2");
    CHECK(cond(s, "Ready").status == "True");
    CHECK(cond(s, "Ready").last_transition_time == "t1");
    CHECK(cond(s, "Provisioned").status == "True");

    ClaimDecision conflicting = adopt;
    conflicting.reason = k_reason_claim_conflict;
    conflicting.conflict = "status.node says node w-03, metalsync's store says w-01 (metalsync's store wins)";
    conflicting.message += ": " + conflicting.conflict;
    s = machine_status(conflicting, s, 1, "t3");
    CHECK(cond(s, "Ready").status == "False");
    CHECK(cond(s, "Ready").reason == "ClaimConflict");
    CHECK(cond(s, "Ready").message.find("(metalsync's store wins)") != std::string::npos);
    CHECK(cond(s, "Provisioned").status == "True");  // the machine still runs
}

TEST_CASE("held by claim: ready, with the hold in the message")
{
    MachineStatus s = machine_status(provisioned("w-01"), MachineStatus{}, 1, "t1");
    ClaimDecision held = decision(ClaimStep::held_by_claim, "w-01", k_reason_held_by_claim,
                                  "Git no longer declares node w-01, but it runs this machine");
    held.git_hold = "Git no longer declares node w-01";
    s = machine_status(held, s, 1, "t2");
    CHECK(cond(s, "Ready").status == "True");
    CHECK(cond(s, "Ready").reason == "HeldByClaim");
    CHECK(cond(s, "Ready").message == "Git no longer declares node w-01, but it runs this machine");

    // Deploying while Git changed its mind: the hold is appended.
    ClaimDecision deploying = decision(ClaimStep::wait, "w-01", k_reason_deploying, "node w-01 is deploying");
    deploying.git_hold = "Git no longer declares node w-01";
    MachineStatus fresh = machine_status(deploying, MachineStatus{}, 1, "t1");
    CHECK(cond(fresh, "Ready").message == "node w-01 is deploying (held against Git: Git no longer declares node w-01)");
}

TEST_CASE("machine status JSON: empty fields left out, read back the same")
{
    MachineStatus waiting = machine_status(decision(ClaimStep::wait, "", k_reason_no_free_node, "0 free"),
                                           MachineStatus{}, 4, "2026-12-02T17:00:00Z");
    nlohmann::json j = to_json(waiting);
    CHECK_FALSE(j.contains("node"));
    CHECK_FALSE(j.contains("failureDomain"));
    CHECK_FALSE(j.contains("initialization"));
    CHECK(j["ready"] == false);
    CHECK(j["conditions"][0]["type"] == "Ready");
    CHECK(j["conditions"][0]["observedGeneration"] == 4);
    CHECK(j["conditions"][0]["lastTransitionTime"] == "2026-12-02T17:00:00Z");

    MachineStatus running = machine_status(provisioned("w-01"), machine_status(claim("w-01"), waiting, 4, "t"), 4, "t2");
    nlohmann::json r = to_json(running);
    CHECK(r["initialization"]["provisioned"] == true);
    CHECK(r["ready"] == true);
    CHECK(r["node"] == "w-01");
    CHECK(r["failureDomain"] == "rack1");
    CHECK(r["addresses"][1]["address"] == "10.0.10.21");

    auto back = machine_status_from_json(r);
    REQUIRE(back);
    CHECK(*back == running);
    auto back_waiting = machine_status_from_json(j);
    REQUIRE(back_waiting);
    CHECK(*back_waiting == waiting);

    CHECK(machine_status_from_json(nlohmann::json()).value() == MachineStatus{});
    auto bad = machine_status_from_json({{"node", 3}});
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == "node: not a string");
    auto no_type = machine_status_from_json({{"conditions", {{{"status", "True"}}}}});
    REQUIRE_FALSE(no_type);
    CHECK(no_type.error() == "conditions[0].type: missing");
}

TEST_CASE("machine status JSON only uses fields the MetalsyncMachine CRD declares")
{
    ClaimDecision failed = decision(ClaimStep::failed, "w-01", k_reason_node_lost, "gone");
    failed.failure_reason = "UpdateError";
    failed.failure_domain = "rack1";
    failed.writes.status_node = true;
    MachineStatus s = machine_status(failed, machine_status(provisioned("w-01"), MachineStatus{}, 1, "t"), 1, "t2");
    nlohmann::json status = to_json(s);
    REQUIRE(status.contains("deprecated"));
    REQUIRE(status.contains("addresses"));
    const YAML::Node schema = crd("metalsyncmachines.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    check_declared(status, schema["properties"]["status"], "status");
}

TEST_CASE("cluster status: provisioned once Git gives the endpoint; failure domains only for v1beta2")
{
    PoolNode a;
    a.name = "a";
    a.labels = {{k_pool_label, "cp"}, {k_zone_label, "rack2"}};
    PoolNode b = a;
    b.name = "b";
    b.labels[k_zone_label] = "rack1";
    std::vector<PoolNode> nodes = {a, b};

    ClusterStatus s = cluster_status({false, false, true, 1}, nodes, ClusterStatus{}, "t1");
    CHECK_FALSE(s.provisioned);
    REQUIRE(find_condition(s.conditions, "Ready"));
    CHECK(find_condition(s.conditions, "Ready")->reason == "WaitingForControlPlaneEndpoint");

    s = cluster_status({true, false, true, 1}, nodes, s, "t2");
    CHECK(s.provisioned == true);
    CHECK(s.ready);
    CHECK(s.failure_domains == std::vector<std::string>{"rack1", "rack2"});
    nlohmann::json v2 = to_json(s, true);
    CHECK(v2["initialization"]["provisioned"] == true);
    CHECK(v2["failureDomains"][0] == nlohmann::json({{"name", "rack1"}, {"controlPlane", true}}));

    // Cluster API v1.5-v1.10 read a map at failureDomains: leave it out.
    ClusterStatus v1 = cluster_status({true, false, false, 1}, nodes, s, "t3");
    CHECK(v1.failure_domains.empty());
    CHECK_FALSE(to_json(v1, false).contains("failureDomains"));
    CHECK_FALSE(to_json(s, false).contains("failureDomains"));

    const YAML::Node schema = crd("metalsyncclusters.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    check_declared(v2, schema["properties"]["status"], "status");

    ClusterStatus paused = cluster_status({true, true, true, 2}, {}, s, "t4");
    CHECK(paused.failure_domains == s.failure_domains);  // untouched while paused
    CHECK(find_condition(paused.conditions, "Paused")->status == "True");
}

TEST_CASE("the CRDs carry the contract labels and the selector operators the code knows")
{
    for (const char* file : {"metalsyncclusters.yaml", "metalsyncmachines.yaml", "metalsyncmachinetemplates.yaml"}) {
        INFO(file);
        const YAML::Node doc = crd(file);
        const YAML::Node labels = doc["metadata"]["labels"];
        CHECK(labels["cluster.x-k8s.io/provider"].as<std::string>() == "infrastructure-metalsync");
        CHECK(labels["cluster.x-k8s.io/v1beta2"].as<std::string>() == "v1alpha1");
        CHECK(labels["cluster.x-k8s.io/v1beta1"].as<std::string>() == "v1alpha1");
        CHECK(doc["spec"]["group"].as<std::string>() == "infrastructure.cluster.x-k8s.io");
        CHECK(doc["spec"]["scope"].as<std::string>() == "Namespaced");
    }
    const YAML::Node op = crd("metalsyncmachines.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                                                      ["properties"]["spec"]["properties"]["hostSelector"]
                                                      ["properties"]["matchExpressions"]["items"]["properties"]
                                                      ["operator"]["enum"];
    REQUIRE(op.size() == 4);
    for (const auto& value : op) {
        CHECK(parse_selector_operator(value.as<std::string>()));
    }
}
