// Reading the provider's objects: a MetalsyncMachine as the API server lists
// it, the Machine's bootstrap data Secret, a revision's nodes with Ironic's
// observation; and the CRDs in schemas/crds/ being what their generator says.

#include <doctest/doctest.h>

#include <string>

#include "reconcilers/provider/objects.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using namespace metalsync::provider;
using json = nlohmann::json;

namespace {

json machine_object()
{
    return json::parse(R"({
      "apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha1",
      "kind": "MetalsyncMachine",
      "metadata": {
        "name": "workers-abc12", "namespace": "default", "uid": "0b4c3a52-7d0e-4c61-9c55-4f2f8cbd1a11",
        "generation": 3,
        "labels": {"cluster.x-k8s.io/cluster-name": "baremetal-cluster"},
        "annotations": {"cluster.x-k8s.io/cloned-from-name": "workers"},
        "finalizers": ["metalsyncmachine.infrastructure.cluster.x-k8s.io"]
      },
      "spec": {
        "hostSelector": {
          "matchLabels": {"metalsync.dev/pool": "workers"},
          "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"},
                               {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["rack1", "rack2"]}]
        },
        "image": {"url": "http://images.example/ubuntu.qcow2",
                  "checksum": "sha256:4d5538ecf8b3fca974e3bfe421be249fd81aba2283ef201d89b67a8743254eb4",
                  "diskFormat": "qcow2"},
        "automatedCleaning": false
      },
      "status": {"node": "r1-node-03", "initialization": {"provisioned": false}}
    })");
}

} // namespace

TEST_CASE("a MetalsyncMachine object is read with its selector, image and status")
{
    auto m = machine_from_json(machine_object());
    REQUIRE_MESSAGE(m.has_value(), m.error());
    CHECK(m->ref == MachineRef{"default", "workers-abc12", "0b4c3a52-7d0e-4c61-9c55-4f2f8cbd1a11"});
    CHECK(m->cluster == "baremetal-cluster");
    CHECK(m->generation == 3);
    CHECK_FALSE(m->deleting);
    CHECK_FALSE(m->paused);
    CHECK(m->status_node == "r1-node-03");
    CHECK_FALSE(m->provisioned);
    CHECK(m->spec.host_selector.match_labels.at("metalsync.dev/pool") == "workers");
    REQUIRE(m->spec.host_selector.match_expressions.size() == 2);
    CHECK(m->spec.host_selector.match_expressions[0].op == SelectorOperator::does_not_exist);
    CHECK(m->spec.host_selector.match_expressions[1].values == std::vector<std::string>{"rack1", "rack2"});
    CHECK(m->spec.image.disk_format == "qcow2");
    CHECK_FALSE(m->spec.automated_cleaning);
    CHECK(m->spec.provider_id.empty());
    CHECK(validate_machine_spec(m->spec));
}

TEST_CASE("deletion, pause and the v1beta1 ready are read from the object")
{
    json o = machine_object();
    o["metadata"]["deletionTimestamp"] = "2026-12-02T18:00:00Z";
    o["metadata"]["annotations"]["cluster.x-k8s.io/paused"] = "";
    o["status"] = {{"ready", true}};
    auto m = machine_from_json(o);
    REQUIRE(m);
    CHECK(m->deleting);
    CHECK(m->paused);  // present, whatever the value
    CHECK(m->provisioned);
    CHECK(m->status_node.empty());
    CHECK(m->spec.automated_cleaning == false);

    o["spec"].erase("automatedCleaning");
    CHECK(machine_from_json(o)->spec.automated_cleaning);  // the CRD's default
}

TEST_CASE("malformed MetalsyncMachines are refused with the field named")
{
    json bad_op = machine_object();
    bad_op["spec"]["hostSelector"]["matchExpressions"][0]["operator"] = "in";
    auto r = machine_from_json(bad_op);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "spec.hostSelector.matchExpressions[0].operator: unknown operator \"in\" (In, NotIn, Exists, "
                       "DoesNotExist)");

    json no_values = machine_object();
    no_values["spec"]["hostSelector"]["matchExpressions"][1].erase("values");
    CHECK(machine_from_json(no_values).error() ==
          "spec.hostSelector.matchExpressions[1]: In needs at least one value");

    json no_uid = machine_object();
    no_uid["metadata"].erase("uid");
    CHECK(machine_from_json(no_uid).error() == "metadata.uid: missing");

    json cleaning = machine_object();
    cleaning["spec"]["automatedCleaning"] = "no";
    CHECK(machine_from_json(cleaning).error() == "spec.automatedCleaning: not a boolean");

    json node = machine_object();
    node["status"]["node"] = 7;
    CHECK(machine_from_json(node).error() == "status.node: not a string");
}

TEST_CASE("the bootstrap data secret: value and format, base64")
{
    json secret = {{"data", {{"value", "I2Nsb3VkLWNvbmZpZwo="}, {"format", "aWduaXRpb24="}}}};  // "#cloud-config\n", "ignition"
    auto b = bootstrap_from_secret(secret);
    REQUIRE(b);
    CHECK(b->value == "#cloud-config\n");
    CHECK(b->format == "ignition");

    secret["data"].erase("format");
    CHECK(bootstrap_from_secret(secret)->format == "cloud-config");

    CHECK(bootstrap_from_secret({{"data", {{"value", "!!"}}}}).error() == "data.value: not base64");
    CHECK(bootstrap_from_secret({{"data", json::object()}}).error() ==
          "data.value: missing (the bootstrap provider has not written it yet)");
    CHECK(bootstrap_from_secret({{"data", {{"value", "eA=="}, {"format", "eWFtbA=="}}}}).error() ==
          "data.format: \"yaml\" is neither cloud-config nor ignition");
}

TEST_CASE("pool nodes join Git's labels and goal with Ironic's observation")
{
    DesiredState desired;
    NodeSpec pool;
    pool.name = "w-01";
    pool.labels = {{k_pool_label, "workers"}};
    pool.provision_state = ProvisionGoal::available;
    desired.nodes["w-01"] = pool;
    NodeSpec active = pool;
    active.name = "w-02";
    active.provision_state = ProvisionGoal::active;
    desired.nodes["w-02"] = active;

    ObservedState observed;
    observed.complete = true;
    ObservedNode o1;
    o1.name = "w-01";
    o1.provision_state = "active";
    o1.maintenance = true;
    o1.last_error = "BMC unreachable";
    o1.instance_uuid = "uid-m1";
    observed.nodes["w-01"] = o1;
    ObservedNode gone = o1;
    gone.name = "old-07";
    gone.maintenance = false;
    gone.instance_uuid = "uid-m9";
    observed.nodes["old-07"] = gone;

    auto nodes = pool_nodes(desired, observed);
    REQUIRE(nodes.size() == 3);
    CHECK(nodes[0].name == "old-07");
    CHECK_FALSE(nodes[0].in_git);
    CHECK(nodes[0].instance_uuid == "uid-m9");
    CHECK_FALSE(in_pool(nodes[0]));

    CHECK(nodes[1].name == "w-01");
    CHECK(in_pool(nodes[1]));
    CHECK(nodes[1].provision_state == "active");
    CHECK(nodes[1].maintenance);
    CHECK(nodes[1].last_error == "BMC unreachable");
    CHECK(nodes[1].instance_uuid == "uid-m1");

    CHECK(nodes[2].name == "w-02");
    CHECK_FALSE(nodes[2].goal_is_available);
    CHECK_FALSE(nodes[2].observed());  // Git only: not enrolled yet
}

TEST_CASE("a MetalsyncMachine read from JSON goes through a claim")
{
    json o = machine_object();
    o["status"].erase("node");
    auto m = machine_from_json(o);
    REQUIRE(m);
    PoolNode n;
    n.name = "r1-node-03";
    n.labels = {{k_pool_label, "workers"}, {k_zone_label, "rack1"}};
    n.provision_state = "available";
    std::vector<PoolNode> nodes = {n};
    ClaimTable claims;
    auto d = reconcile_claim({*m, BootstrapData{"#cloud-config\n", "cloud-config"}, nodes, claims, "site-a"});
    CHECK(d.step == ClaimStep::claim);
    CHECK(d.node == "r1-node-03");
    CHECK(d.failure_domain == "rack1");
}

TEST_CASE("schemas/crds/ is what schemas/crds/generate.py writes, and passes its checks")
{
    auto r = test::run({"python3", (test::source_dir() / "schemas/crds/generate.py").string(), "--check"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "3 CRDs checked\n");
}

TEST_CASE("claim rows: round trip, and rows the table refuses are reported")
{
    ClaimRecord a{"n1", MachineRef{"default", "w1", "uid-w1"}, "metal", ClaimPhase::claimed};
    ClaimRecord b{"n2", MachineRef{"default", "w2", "uid-w2"}, "metal", ClaimPhase::releasing};
    std::vector<metalsync::ClaimRow> rows = {claim_row(a, 10), claim_row(b, 11)};
    CHECK(rows[1].phase == "releasing");
    CHECK(rows[0].updated_at == 10);
    rows.push_back(claim_row({"n1", MachineRef{"default", "w3", "uid-w3"}, "metal", ClaimPhase::claimed}, 12));
    rows.push_back({"n4", "default", "w4", "uid-w4", "metal", "stolen", 13});
    std::vector<std::string> problems;
    ClaimTable table = claim_table_from_rows(rows, &problems);
    REQUIRE(table.size() == 2);
    CHECK(*table.by_node("n1") == a);
    CHECK(*table.by_machine("uid-w2") == b);
    REQUIRE(problems.size() == 2);
    CHECK(problems[0].find("n1") != std::string::npos);
    CHECK(problems[1].find("stolen") != std::string::npos);
}
