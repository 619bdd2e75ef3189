// The provider's pass, pure: objects as the API server lists them in, the
// store's claims, Ironic actions and Kubernetes writes out, in the order the
// daemon applies them.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "reconcilers/provider/controller.hpp"
#include "reconcilers/provider/objects.hpp"

using namespace metalsync;
using namespace metalsync::provider;
using nlohmann::json;

namespace {

const std::string k_sha = "sha256:" + std::string(64, 'a');

json metal_machine(const std::string& name, bool finalizer = true)
{
    json m = {{"apiVersion", k_provider_api_version},
              {"kind", "MetalsyncMachine"},
              {"metadata",
               {{"name", name},
                {"namespace", "default"},
                {"uid", "uid-" + name},
                {"generation", 1},
                {"resourceVersion", "7"},
                {"labels", {{"cluster.x-k8s.io/cluster-name", "metal"}}},
                {"ownerReferences",
                 json::array({{{"apiVersion", "cluster.x-k8s.io/v1beta2"},
                               {"kind", "Machine"},
                               {"name", name},
                               {"uid", "m-" + name},
                               {"controller", true}}})}}},
              {"spec",
               {{"hostSelector", {{"matchLabels", {{"metalsync.dev/pool", "workers"}}}}},
                {"image", {{"url", "http://images.example/ubuntu.qcow2"}, {"checksum", k_sha}, {"diskFormat", "qcow2"}}}}}};
    if (finalizer) m["metadata"]["finalizers"] = json::array({k_machine_finalizer});
    return m;
}

json capi_machine(const std::string& name, const std::string& secret = "")
{
    json m = {{"apiVersion", "cluster.x-k8s.io/v1beta2"},
              {"kind", "Machine"},
              {"metadata", {{"name", name}, {"namespace", "default"}}},
              {"spec", {{"clusterName", "metal"}, {"bootstrap", json::object()}}}};
    if (!secret.empty()) m["spec"]["bootstrap"]["dataSecretName"] = secret;
    return m;
}

json capi_cluster(bool provisioned, bool paused = false)
{
    return {{"apiVersion", "cluster.x-k8s.io/v1beta2"},
            {"kind", "Cluster"},
            {"metadata", {{"name", "metal"}, {"namespace", "default"}}},
            {"spec", {{"paused", paused}}},
            {"status", {{"initialization", {{"infrastructureProvisioned", provisioned}}}}}};
}

PoolNode pool_node(const std::string& name)
{
    PoolNode n;
    n.name = name;
    n.labels[k_pool_label] = "workers";
    n.provision_state = "available";
    return n;
}

struct World {
    std::vector<json> metal_machines;
    std::vector<json> metal_clusters;
    std::vector<json> machines;
    std::vector<json> clusters{capi_cluster(true)};
    std::vector<PoolNode> nodes{pool_node("n1"), pool_node("n2")};
    ClaimTable claims;
    DesiredState desired;
    std::map<std::string, BootstrapData> bootstrap;  // by machine name

    ProviderView view(bool complete = true) const
    {
        ProviderView v = assemble_view(metal_machines, metal_clusters, machines, clusters);
        for (auto& mv : v.machines) {
            if (auto it = bootstrap.find(mv.machine.ref.name); it != bootstrap.end()) mv.bootstrap = it->second;
        }
        v.complete = complete;
        return v;
    }

    ProviderPlan plan(bool complete = true) const
    {
        const ProviderView v = view(complete);
        return plan_provider({v, nodes, claims, desired, "metalsync", "2026-12-03T00:00:00Z"});
    }
};

const KubeWrite* find_write(const std::vector<KubeWrite>& writes, KubeWrite::Op op)
{
    for (const auto& w : writes) {
        if (w.op == op) return &w;
    }
    return nullptr;
}

} // namespace

TEST_CASE("assemble_view: owners give bootstrap secret, failure domain, pause and infrastructure readiness")
{
    json owner = capi_machine("w1", "w1-bootstrap");
    owner["spec"]["failureDomain"] = "rack1";
    json v1beta1_cluster = {{"apiVersion", "cluster.x-k8s.io/v1beta1"},
                            {"kind", "Cluster"},
                            {"metadata", {{"name", "old"}, {"namespace", "default"}}},
                            {"spec", {{"paused", false}}},
                            {"status", {{"infrastructureReady", true}}}};
    json in_old = metal_machine("w2");
    in_old["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] = "old";
    json orphan = metal_machine("w3");
    orphan["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] = "nowhere";
    json metal_cluster = {{"apiVersion", k_provider_api_version},
                          {"kind", "MetalsyncCluster"},
                          {"metadata",
                           {{"name", "metal"},
                            {"namespace", "default"},
                            {"uid", "mc"},
                            {"generation", 2},
                            {"labels", {{"cluster.x-k8s.io/cluster-name", "metal"}}}}},
                          {"spec", {{"controlPlaneEndpoint", {{"host", "192.0.2.100"}, {"port", 6443}}}}}};

    ProviderView v = assemble_view({metal_machine("w1"), in_old, orphan}, {metal_cluster}, {owner},
                                   {capi_cluster(false, true), v1beta1_cluster});
    REQUIRE(v.machines.size() == 3);
    const MachineView& w1 = v.machines[0];
    CHECK(w1.owner_machine == "w1");
    CHECK(w1.bootstrap_secret == "w1-bootstrap");
    CHECK(w1.machine.machine_failure_domain == "rack1");
    CHECK(w1.machine.paused);  // the Cluster's spec.paused
    CHECK_FALSE(w1.machine.cluster_infrastructure_ready);
    CHECK(w1.finalizers == std::vector<std::string>{k_machine_finalizer});
    CHECK(v.machines[1].machine.cluster_infrastructure_ready);  // v1beta1 status.infrastructureReady
    CHECK(v.machines[1].bootstrap_secret.empty());              // its Machine is not listed yet
    CHECK_FALSE(v.machines[2].machine.cluster_infrastructure_ready);
    REQUIRE(v.clusters.size() == 1);
    CHECK(v.clusters[0].endpoint_set);
    CHECK(v.clusters[0].paused);
    CHECK(v.clusters[0].generation == 2);
}

TEST_CASE("plan_provider: the finalizer goes on first, and nothing is claimed before it")
{
    World w;
    w.metal_machines = {metal_machine("w1", false)};
    w.machines = {capi_machine("w1", "w1-bootstrap")};
    w.bootstrap["w1"] = {"#cloud-config\n", "cloud-config"};
    auto plan = w.plan();
    REQUIRE(plan.machines.size() == 1);
    const auto& mp = plan.machines[0];
    CHECK_FALSE(mp.put);
    CHECK(mp.actions.empty());
    const KubeWrite* f = find_write(mp.writes, KubeWrite::Op::set_finalizers);
    REQUIRE(f != nullptr);
    CHECK(f->value == json::array({k_machine_finalizer}));
    CHECK(f->resource_version == "7");
}

TEST_CASE("plan_provider: claim, then deploy with the bootstrap data and providerID, then report")
{
    World w;
    w.metal_machines = {metal_machine("w1")};
    w.machines = {capi_machine("w1", "w1-bootstrap")};
    w.bootstrap["w1"] = {"#cloud-config\nruncmd: [kubeadm join --token abcdef.0123456789abcdef]\n", "cloud-config"};

    // Pass 1: the claim, recorded first; Ironic's instance_uuid; status.node.
    auto plan = w.plan();
    REQUIRE(plan.machines.size() == 1);
    auto mp = plan.machines[0];
    CHECK(mp.decision.step == ClaimStep::claim);
    REQUIRE(mp.put);
    CHECK(mp.put->node == "n1");
    CHECK(mp.put->machine.uid == "uid-w1");
    REQUIRE(mp.actions.size() == 1);
    CHECK(mp.actions[0].verb == ActionVerb::update_node);
    CHECK(mp.actions[0].params["patch"][0]["path"] == "/instance_uuid");
    CHECK(mp.actions[0].params["patch"][0]["value"] == "uid-w1");
    const KubeWrite* status = find_write(mp.writes, KubeWrite::Op::apply_status);
    REQUIRE(status != nullptr);
    CHECK(status->value["node"] == "n1");

    // The daemon applied it: store, Ironic, status.
    REQUIRE(w.claims.put(*mp.put));
    w.nodes[0].instance_uuid = "uid-w1";
    w.metal_machines[0]["status"] = status->value;

    // Pass 2: deploy, the user data withheld from the journal.
    plan = w.plan();
    mp = plan.machines[0];
    CHECK(mp.decision.step == ClaimStep::deploy);
    CHECK_FALSE(mp.put);
    REQUIRE(mp.actions.size() == 1);
    const Action& deploy = mp.actions[0];
    CHECK(deploy.verb == ActionVerb::deploy);
    CHECK(deploy.provisioning);
    CHECK(deploy.params["configdrive"]["user_data"].get<std::string>().find("kubeadm join") != std::string::npos);
    CHECK(deploy.params["configdrive"]["meta_data"]["providerid"] == "metalsync://metalsync/n1");
    CHECK(deploy.params["configdrive"]["meta_data"]["local-hostname"] == "w1");
    CHECK(deploy.params["instance_info"]["image_source"] == "http://images.example/ubuntu.qcow2");
    CHECK(deploy.secret_user_data);
    const std::string journal = journal_params(deploy).dump();
    CHECK(journal.find("abcdef") == std::string::npos);
    CHECK(journal.find("withheld") != std::string::npos);
    CHECK(to_json(deploy).dump().find("abcdef") == std::string::npos);

    // Pass 3: Ironic says active: providerID and provisioned.
    w.nodes[0].provision_state = "active";
    plan = w.plan();
    mp = plan.machines[0];
    CHECK(mp.decision.step == ClaimStep::report_provisioned);
    CHECK(mp.actions.empty());
    const KubeWrite* pid = find_write(mp.writes, KubeWrite::Op::set_provider_id);
    REQUIRE(pid != nullptr);
    CHECK(pid->value == "metalsync://metalsync/n1");
    status = find_write(mp.writes, KubeWrite::Op::apply_status);
    REQUIRE(status != nullptr);
    CHECK(status->value["initialization"]["provisioned"] == true);
    CHECK(status->value["ready"] == true);

    // Pass 4: applied: nothing more to write.
    w.metal_machines[0]["spec"]["providerID"] = pid->value;
    w.metal_machines[0]["status"] = status->value;
    plan = w.plan();
    mp = plan.machines[0];
    CHECK(mp.decision.step == ClaimStep::in_sync);
    CHECK(mp.actions.empty());
    // Ready's message says "running" now; once written, a pass writes nothing.
    status = find_write(mp.writes, KubeWrite::Op::apply_status);
    REQUIRE(status != nullptr);
    CHECK(status->value["conditions"][0]["message"] == "running on node n1");
    w.metal_machines[0]["status"] = status->value;
    plan = w.plan();
    CHECK(plan.machines[0].decision.step == ClaimStep::in_sync);
    CHECK(plan.machines[0].writes.empty());
    CHECK(plan.machines[0].actions.empty());

    // The node planner is told to leave n1 alone.
    auto holds = claim_holds(w.nodes, w.claims);
    REQUIRE(holds.contains("n1"));
    CHECK(holds["n1"].find("default/w1") != std::string::npos);
    CHECK_FALSE(holds.contains("n2"));
}

TEST_CASE("plan_provider: a template without an image deploys each node's own image from Git")
{
    World w;
    json m = metal_machine("w1");
    m["spec"].erase("image");
    w.metal_machines = {m};
    w.machines = {capi_machine("w1", "w1-bootstrap")};
    w.bootstrap["w1"] = {"#cloud-config\n", "cloud-config"};
    w.nodes[1].image_url = "http://images.example/rack-image.raw";
    w.nodes[1].image_checksum = "sha256:" + std::string(64, 'c');
    // n1 has no image in Git: not a candidate; n2 is chosen.
    auto plan = w.plan();
    auto mp = plan.machines[0];
    REQUIRE(mp.decision.step == ClaimStep::claim);
    CHECK(mp.decision.node == "n2");
    REQUIRE(w.claims.put(*mp.put));
    w.nodes[1].instance_uuid = "uid-w1";
    w.metal_machines[0]["status"] = {{"node", "n2"}};
    plan = w.plan();
    mp = plan.machines[0];
    REQUIRE(mp.decision.step == ClaimStep::deploy);
    REQUIRE(mp.actions.size() == 1);
    CHECK(mp.actions[0].params["instance_info"]["image_source"] == "http://images.example/rack-image.raw");
    CHECK(mp.decision.message.find("the node's own image") != std::string::npos);

    // Without any image anywhere, nothing is free, and the reason says why.
    World none;
    none.metal_machines = {m};
    none.machines = {capi_machine("w1", "w1-bootstrap")};
    none.bootstrap["w1"] = {"#cloud-config\n", "cloud-config"};
    plan = none.plan();
    CHECK(plan.machines[0].decision.step == ClaimStep::wait);
    CHECK(plan.machines[0].decision.message.find("no image") != std::string::npos);
}

TEST_CASE("plan_provider: a claim whose machine left the cluster is released, only on a complete view")
{
    World w;
    w.nodes[0].provision_state = "active";
    w.nodes[0].instance_uuid = "uid-gone";
    REQUIRE(w.claims.put({"n1", MachineRef{"default", "gone", "uid-gone"}, "metal", ClaimPhase::claimed}));

    auto plan = w.plan(false);
    CHECK(plan.machines.empty());

    plan = w.plan(true);
    REQUIRE(plan.machines.size() == 1);
    const auto& mp = plan.machines[0];
    CHECK(mp.synthetic);
    CHECK(mp.writes.empty());  // no object left to write
    REQUIRE(mp.put);
    CHECK(mp.put->phase == ClaimPhase::releasing);  // the journal says releasing before Ironic is asked
    REQUIRE(mp.actions.size() == 1);
    CHECK(mp.actions[0].verb == ActionVerb::undeploy);
}

TEST_CASE("plan_provider: automatedCleaning false: automated_clean off for this tear-down, then undeploy")
{
    World w;
    json m = metal_machine("w1");
    m["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z";
    m["spec"]["automatedCleaning"] = false;
    m["status"] = {{"node", "n1"}};
    w.metal_machines = {m};
    w.nodes[0].provision_state = "active";
    w.nodes[0].instance_uuid = "uid-w1";
    REQUIRE(w.claims.put({"n1", MachineRef{"default", "w1", "uid-w1"}, "metal", ClaimPhase::claimed}));
    auto plan = w.plan();
    REQUIRE(plan.machines.size() == 1);
    const auto& mp = plan.machines[0];
    CHECK(mp.decision.step == ClaimStep::release);
    REQUIRE(mp.actions.size() == 2);
    CHECK(mp.actions[0].verb == ActionVerb::update_node);
    CHECK(mp.actions[0].params["patch"][0]["path"] == "/automated_clean");
    CHECK(mp.actions[0].params["patch"][0]["value"] == false);
    CHECK(mp.actions[1].verb == ActionVerb::undeploy);
}

TEST_CASE("plan_provider: a deleted machine's finalizer goes once its node is back in the pool")
{
    World w;
    json m = metal_machine("w1");
    m["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z";
    m["metadata"]["finalizers"] = json::array({"other.example/keep", k_machine_finalizer});
    m["status"] = {{"node", "n1"}};
    w.metal_machines = {m};
    REQUIRE(w.claims.put({"n1", MachineRef{"default", "w1", "uid-w1"}, "metal", ClaimPhase::releasing}));
    // Back in the pool, instance_uuid cleared by Ironic's tear-down.
    auto plan = w.plan();
    REQUIRE(plan.machines.size() == 1);
    const auto& mp = plan.machines[0];
    CHECK(mp.decision.step == ClaimStep::forget);
    CHECK(mp.drop);
    const KubeWrite* f = find_write(mp.writes, KubeWrite::Op::set_finalizers);
    REQUIRE(f != nullptr);
    CHECK(f->value == json::array({"other.example/keep"}));
}

TEST_CASE("plan_provider: MetalsyncCluster provisioned once it has an endpoint")
{
    World w;
    json mc = {{"apiVersion", k_provider_api_version},
               {"kind", "MetalsyncCluster"},
               {"metadata", {{"name", "metal"}, {"namespace", "default"}, {"uid", "mc"}, {"generation", 1}}},
               {"spec", {{"controlPlaneEndpoint", {{"host", "192.0.2.100"}, {"port", 6443}}}}}};
    w.metal_clusters = {mc};
    auto plan = w.plan();
    REQUIRE(plan.cluster_writes.size() == 1);
    CHECK(plan.cluster_writes[0].kind == "MetalsyncCluster");
    CHECK(plan.cluster_writes[0].value["initialization"]["provisioned"] == true);
    CHECK(plan.cluster_writes[0].value["ready"] == true);
    mc["status"] = plan.cluster_writes[0].value;
    w.metal_clusters = {mc};
    CHECK(w.plan().cluster_writes.empty());

    mc["spec"].erase("controlPlaneEndpoint");
    mc["status"] = json::object();
    w.metal_clusters = {mc};
    plan = w.plan();
    REQUIRE(plan.cluster_writes.size() == 1);
    CHECK(plan.cluster_writes[0].value.value("ready", true) == false);
}
