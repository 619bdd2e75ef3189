// The provider's claim state machine, pure: a MetalsyncMachine's whole life
// on a pool node, the three places a claim lives in (metalsync's store,
// Ironic's instance_uuid, status.node) lost one by one and rebuilt, the rules
// when they disagree, pause, Git changing a claimed node, and upgrades.
//
// `Site` plays the wiring and Ironic: it applies each decision as the daemon
// will (store, then Ironic, then the MetalsyncMachine) and moves Ironic's
// provision states by hand.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "reconcilers/provider/claim.hpp"

using namespace metalsync::provider;

namespace {

const std::string k_sha = "sha256:" + std::string(64, 'a');

PoolNode pool_node(const std::string& name, const std::string& pool = "workers", const std::string& zone = "")
{
    PoolNode n;
    n.name = name;
    n.labels[k_pool_label] = pool;
    if (!zone.empty()) {
        n.labels[k_zone_label] = zone;
    }
    n.provision_state = "available";
    return n;
}

Machine machine(const std::string& name, const std::string& cluster = "c1")
{
    Machine m;
    m.ref = {"default", name, "uid-" + name};
    m.cluster = cluster;
    m.generation = 1;
    m.spec.host_selector.match_labels[k_pool_label] = "workers";
    m.spec.image = {"http://images.example/ubuntu.qcow2", k_sha, "qcow2"};
    return m;
}

BootstrapData bootstrap() { return {"#cloud-config\nruncmd: [kubeadm join]\n", "cloud-config"}; }

struct Site {
    std::vector<PoolNode> nodes;
    ClaimTable claims;
    std::vector<Machine> machines;
    std::vector<std::optional<BootstrapData>> bootstraps;
    bool finalizer_removed = false;
    bool last_clean = true;

    PoolNode& node(const std::string& name)
    {
        for (auto& n : nodes) {
            if (n.name == name) return n;
        }
        FAIL("no node " << name);
        throw 0;
    }

    Machine& m(std::size_t i = 0) { return machines.at(i); }

    std::size_t add(Machine mach, std::optional<BootstrapData> data = bootstrap())
    {
        machines.push_back(std::move(mach));
        bootstraps.push_back(std::move(data));
        return machines.size() - 1;
    }

    ClaimDecision step(std::size_t i = 0)
    {
        return reconcile_claim({machines.at(i), bootstraps.at(i), nodes, claims, "site-a"});
    }

    void apply(const ClaimDecision& d, std::size_t i = 0)
    {
        Machine& mach = machines.at(i);
        if (d.writes.store) {
            auto put = claims.put({d.node, mach.ref, mach.cluster, d.writes.phase});
            REQUIRE_MESSAGE(put.has_value(), put.error());
        }
        if (d.writes.instance_uuid) node(d.node).instance_uuid = mach.ref.uid;
        if (!d.writes.clear_instance_uuid_on.empty()) node(d.writes.clear_instance_uuid_on).instance_uuid.clear();
        if (d.step == ClaimStep::deploy) node(d.node).provision_state = "deploying";
        if (d.step == ClaimStep::release) {
            node(d.node).provision_state = "deleting";
            last_clean = d.automated_clean;
        }
        if (d.writes.status_node) mach.status_node = d.node;
        if (d.writes.clear_status_node) mach.status_node.clear();
        if (d.step == ClaimStep::report_provisioned) {
            mach.spec.provider_id = d.provider_id;
            mach.provisioned = true;
        }
        if (d.writes.drop_store) claims.erase_machine(mach.ref.uid);
        if (d.remove_finalizer) finalizer_removed = true;
    }

    ClaimDecision step_apply(std::size_t i = 0)
    {
        ClaimDecision d = step(i);
        apply(d, i);
        return d;
    }

    // Claims, deploys and reports machine i until it runs (Ironic deploys at once).
    void provision(std::size_t i = 0)
    {
        for (int pass = 0; pass < 10; ++pass) {
            ClaimDecision d = step_apply(i);
            if (d.step == ClaimStep::in_sync) return;
            if (d.step == ClaimStep::deploy) node(d.node).provision_state = "active";
            REQUIRE_MESSAGE(d.step != ClaimStep::wait, d.message);
        }
        FAIL("machine " << i << " did not reach in_sync");
    }
};

Site one_machine(int nodes = 2)
{
    Site s;
    for (int i = 1; i <= nodes; ++i) {
        s.nodes.push_back(pool_node("w-0" + std::to_string(i)));
    }
    s.add(machine("m1"));
    return s;
}

} // namespace

TEST_CASE("a whole life: wait for bootstrap, claim, deploy, provisioned, delete, release, forget")
{
    Site s = one_machine();
    s.nodes[0].addresses = {{"InternalIP", "10.0.10.21"}};
    s.bootstraps[0].reset();

    auto d = s.step_apply();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.reason == "WaitingForBootstrapData");
    CHECK_FALSE(d.writes.any());
    CHECK(s.claims.size() == 0);  // no node is held while the bootstrap data does not exist

    s.bootstraps[0] = bootstrap();
    d = s.step_apply();
    CHECK(d.step == ClaimStep::claim);
    CHECK(d.node == "w-01");
    CHECK(d.writes.store);
    CHECK(d.writes.instance_uuid);
    CHECK(d.writes.status_node);
    CHECK(s.claims.by_machine("uid-m1")->node == "w-01");
    CHECK(s.node("w-01").instance_uuid == "uid-m1");

    d = s.step_apply();
    CHECK(d.step == ClaimStep::deploy);
    REQUIRE(d.deploy);
    CHECK(d.deploy->instance_info["image_source"] == "http://images.example/ubuntu.qcow2");
    CHECK(d.deploy->instance_info["image_os_hash_algo"] == "sha256");
    CHECK(d.deploy->instance_info["image_disk_format"] == "qcow2");
    CHECK(d.deploy->configdrive["user_data"] == bootstrap().value);
    CHECK(d.deploy->bootstrap_format == "cloud-config");
    const auto& meta = d.deploy->configdrive["meta_data"];
    CHECK(meta["uuid"] == "uid-m1");
    CHECK(meta["local-hostname"] == "m1");
    CHECK(meta["name"] == "m1");
    CHECK(meta["providerid"] == "metalsync://site-a/w-01");

    d = s.step_apply();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.reason == "Deploying");
    s.node("w-01").provision_state = "wait call-back";
    CHECK(s.step().reason == "Deploying");

    s.node("w-01").provision_state = "active";
    d = s.step_apply();
    CHECK(d.step == ClaimStep::report_provisioned);
    CHECK(d.provider_id == "metalsync://site-a/w-01");
    CHECK(d.addresses == std::vector<MachineAddress>{{"Hostname", "m1"}, {"InternalIP", "10.0.10.21"}});

    d = s.step_apply();
    CHECK(d.step == ClaimStep::in_sync);
    CHECK(s.step().step == ClaimStep::in_sync);  // settled: stays so

    s.m().deleting = true;
    d = s.step_apply();
    CHECK(d.step == ClaimStep::release);
    CHECK(d.automated_clean);
    CHECK(d.writes.store);
    CHECK(d.writes.phase == ClaimPhase::releasing);  // the journal says releasing before Ironic undeploys
    CHECK(s.claims.by_machine("uid-m1")->phase == ClaimPhase::releasing);

    CHECK(s.step_apply().reason == "Releasing");  // deleting
    s.node("w-01").provision_state = "clean wait";
    d = s.step_apply();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.message == "releasing node w-01: clean wait");
    CHECK_FALSE(s.finalizer_removed);

    s.node("w-01").provision_state = "available";
    d = s.step_apply();
    CHECK(d.step == ClaimStep::unclaim);
    CHECK(d.writes.clear_instance_uuid_on == "w-01");
    CHECK_FALSE(d.remove_finalizer);

    d = s.step_apply();
    CHECK(d.step == ClaimStep::forget);
    CHECK(d.remove_finalizer);
    CHECK(s.finalizer_removed);
    CHECK(s.claims.size() == 0);
    CHECK(s.m().status_node.empty());
    CHECK(s.node("w-01").instance_uuid.empty());
}

TEST_CASE("automatedCleaning false releases without cleaning")
{
    Site s = one_machine();
    s.m().spec.automated_cleaning = false;
    s.provision();
    s.m().deleting = true;
    auto d = s.step();
    CHECK(d.step == ClaimStep::release);
    CHECK_FALSE(d.automated_clean);
    CHECK(d.message == "undeploying node w-01 without cleaning (from active)");
}

TEST_CASE("Ironic clearing instance_uuid at tear-down is the release's doing, not a lost claim")
{
    Site s = one_machine();
    s.provision();
    s.m().deleting = true;
    s.step_apply();
    s.node("w-01").provision_state = "available";
    s.node("w-01").instance_uuid.clear();
    auto d = s.step_apply();
    CHECK(d.step == ClaimStep::forget);  // never adopt: the machine is going
    CHECK_FALSE(d.writes.instance_uuid);
    CHECK(s.finalizer_removed);
}

TEST_CASE("a deleted machine that never claimed a node goes at once")
{
    Site s = one_machine();
    s.bootstraps[0].reset();
    s.m().deleting = true;
    auto d = s.step();
    CHECK(d.step == ClaimStep::forget);
    CHECK(d.remove_finalizer);
    CHECK_FALSE(d.writes.any());
}

TEST_CASE("each of the three places lost in turn is rebuilt from the other two")
{
    Site s = one_machine();
    s.provision();
    const ClaimRecord before = *s.claims.by_machine("uid-m1");

    SUBCASE("the store")
    {
        s.claims.erase_machine("uid-m1");
        auto d = s.step_apply();
        CHECK(d.step == ClaimStep::adopt);
        CHECK(d.reason == "ClaimRestored");
        CHECK(d.writes.store);
        CHECK_FALSE(d.writes.instance_uuid);
        CHECK_FALSE(d.writes.status_node);
        CHECK(d.conflict.empty());
        CHECK(d.message == "claim on node w-01 restored in metalsync's store");
    }
    SUBCASE("status.node")
    {
        s.m().status_node.clear();
        auto d = s.step_apply();
        CHECK(d.step == ClaimStep::adopt);
        CHECK(d.writes.status_node);
        CHECK_FALSE(d.writes.store);
        CHECK_FALSE(d.writes.instance_uuid);
    }
    SUBCASE("Ironic's instance_uuid")
    {
        s.node("w-01").instance_uuid.clear();
        auto d = s.step_apply();
        CHECK(d.step == ClaimStep::adopt);
        CHECK(d.writes.instance_uuid);
        CHECK_FALSE(d.writes.store);
        CHECK_FALSE(d.writes.status_node);
    }
    SUBCASE("the store and status.node: Ironic alone remembers")
    {
        s.claims.erase_machine("uid-m1");
        s.m().status_node.clear();
        auto d = s.step_apply();
        CHECK(d.step == ClaimStep::adopt);
        CHECK(d.writes.store);
        CHECK(d.writes.status_node);
        CHECK_FALSE(d.writes.instance_uuid);
    }
    SUBCASE("Ironic and status.node: the store alone remembers")
    {
        s.node("w-01").instance_uuid.clear();
        s.m().status_node.clear();
        auto d = s.step_apply();
        CHECK(d.writes.instance_uuid);
        CHECK(d.writes.status_node);
        CHECK_FALSE(d.writes.store);
    }
    SUBCASE("the store and Ironic: status.node alone remembers")
    {
        s.claims.erase_machine("uid-m1");
        s.node("w-01").instance_uuid.clear();
        auto d = s.step_apply();
        CHECK(d.writes.store);
        CHECK(d.writes.instance_uuid);
        CHECK_FALSE(d.writes.status_node);
    }
    // Whatever was lost, the machine is back where it was, on the same node,
    // without a redeploy.
    CHECK(*s.claims.by_machine("uid-m1") == before);
    CHECK(s.node("w-01").instance_uuid == "uid-m1");
    CHECK(s.m().status_node == "w-01");
    auto settled = s.step();
    CHECK(settled.step == ClaimStep::in_sync);
    CHECK(settled.node == "w-01");
}

TEST_CASE("a crash between the store and Ironic during a claim is finished, not repeated elsewhere")
{
    Site s = one_machine();
    auto d = s.step();
    REQUIRE(d.step == ClaimStep::claim);
    // Only the store write happened.
    REQUIRE(s.claims.put({d.node, s.m().ref, "c1", ClaimPhase::claimed}));
    auto again = s.step();
    CHECK(again.step == ClaimStep::adopt);
    CHECK(again.node == d.node);
    CHECK(again.writes.instance_uuid);
    CHECK(again.writes.status_node);
}

TEST_CASE("disagreement: Ironic's instance_uuid wins over the store")
{
    Site s = one_machine(3);
    s.provision();  // on w-01
    // The store was restored from an old backup that says w-02.
    s.claims.erase_machine("uid-m1");
    REQUIRE(s.claims.put({"w-02", s.m().ref, "c1", ClaimPhase::claimed}));
    auto d = s.step_apply();
    CHECK(d.step == ClaimStep::adopt);
    CHECK(d.node == "w-01");
    CHECK(d.reason == "ClaimConflict");
    CHECK(d.writes.store);
    CHECK(d.conflict == "metalsync's store says node w-02, Ironic's instance_uuid says w-01 (Ironic's instance_uuid wins)");
    CHECK(s.claims.by_node("w-02") == nullptr);  // w-02 is free again, untouched in Ironic
    CHECK(s.node("w-02").instance_uuid.empty());
    CHECK(s.step().step == ClaimStep::in_sync);
}

TEST_CASE("disagreement: the store wins over status.node")
{
    Site s = one_machine(3);
    s.provision();
    s.m().status_node = "w-03";
    auto d = s.step_apply();
    CHECK(d.step == ClaimStep::adopt);
    CHECK(d.node == "w-01");
    CHECK(d.writes.status_node);
    CHECK(d.conflict == "status.node says node w-03, Ironic's instance_uuid says w-01 (Ironic's instance_uuid wins)");
    CHECK(s.m().status_node == "w-01");
    CHECK(s.node("w-03").instance_uuid.empty());

    // Without Ironic's word, the store decides.
    s.node("w-01").instance_uuid.clear();
    s.m().status_node = "w-03";
    auto d2 = s.step();
    CHECK(d2.node == "w-01");
    CHECK(d2.conflict == "status.node says node w-03, metalsync's store says w-01 (metalsync's store wins)");
}

TEST_CASE("disagreement never gives one node to two machines")
{
    Site s;
    s.nodes = {pool_node("w-01"), pool_node("w-02"), pool_node("w-03")};
    s.add(machine("m1"));
    s.add(machine("m2"));

    SUBCASE("our store names a node Ironic gives to another machine")
    {
        s.node("w-01").instance_uuid = "uid-m2";
        s.node("w-01").provision_state = "active";
        REQUIRE(s.claims.put({"w-01", s.m(0).ref, "c1", ClaimPhase::claimed}));
        s.m(0).status_node = "w-01";
        auto d = s.step_apply(0);
        CHECK(d.step == ClaimStep::conflict);
        CHECK(d.reason == "ClaimConflict");
        CHECK(d.writes.drop_store);
        CHECK(d.writes.clear_status_node);
        CHECK_FALSE(d.writes.instance_uuid);
        CHECK(d.conflict.find("metalsync's store says node w-01, but Ironic gives it to instance uid-m2 (Ironic wins)") == 0);
        // m1 was never deployed: it chooses again, elsewhere.
        auto next = s.step(0);
        CHECK(next.step == ClaimStep::claim);
        CHECK(next.node == "w-02");
    }
    SUBCASE("our status names a node the store gives to another machine")
    {
        REQUIRE(s.claims.put({"w-01", s.m(1).ref, "c1", ClaimPhase::claimed}));
        s.m(0).status_node = "w-01";
        auto d = s.step(0);
        CHECK(d.step == ClaimStep::conflict);
        CHECK(d.writes.clear_status_node);
        CHECK_FALSE(d.writes.store);
        CHECK(d.conflict == "status.node says node w-01, but metalsync's store gives it to default/m2 (the store wins)");
    }
    SUBCASE("both machines' stories at once: each decision keeps the node on one side")
    {
        // m1's store record says w-01; Ironic says w-01 is m2's (m2's record lost).
        REQUIRE(s.claims.put({"w-01", s.m(0).ref, "c1", ClaimPhase::claimed}));
        s.node("w-01").instance_uuid = "uid-m2";
        s.node("w-01").provision_state = "active";
        s.m(1).status_node = "w-01";
        auto decisions = reconcile_claims({{s.m(0), bootstrap()}, {s.m(1), bootstrap()}}, s.nodes, s.claims, "site-a");
        REQUIRE(decisions.size() == 2);
        CHECK(decisions[0].writes.drop_store);   // m1 lets go
        CHECK(decisions[0].node.empty());
        CHECK(decisions[1].step == ClaimStep::adopt);
        CHECK(decisions[1].node == "w-01");     // m2 takes its record back
        CHECK(decisions[1].writes.store);
        // Applied in that order, the store holds w-01 for m2 only.
        s.apply(decisions[0], 0);
        s.apply(decisions[1], 1);
        CHECK(s.claims.by_node("w-01")->machine.name == "m2");
        CHECK(s.claims.by_machine("uid-m1") == nullptr);
    }
    SUBCASE("Ironic gives two nodes to one machine: nothing is touched")
    {
        s.node("w-01").instance_uuid = "uid-m1";
        s.node("w-02").instance_uuid = "uid-m1";
        auto d = s.step(0);
        CHECK(d.step == ClaimStep::conflict);
        CHECK_FALSE(d.writes.any());
        CHECK(d.message == "Ironic gives nodes w-01, w-02 to this machine (instance_uuid uid-m1); clear the "
                           "instance_uuid of the wrong one");
    }
}

TEST_CASE("two machines in one pass never choose the same free node")
{
    Site s;
    s.nodes = {pool_node("w-01")};
    s.add(machine("b"));
    s.add(machine("a"));
    auto decisions = reconcile_claims({{s.m(0), bootstrap()}, {s.m(1), bootstrap()}}, s.nodes, s.claims, "site-a");
    // Ordered by namespace/name: a first.
    CHECK(decisions[1].step == ClaimStep::claim);
    CHECK(decisions[1].node == "w-01");
    CHECK(decisions[0].step == ClaimStep::wait);
    CHECK(decisions[0].reason == "NoFreeNode");
    CHECK(decisions[0].message == "1 node matches, 0 free (1 claimed): w-01 claimed by default/a; every matching node "
                                  "runs a machine of cluster c1: a rolling update needs a spare node (add one to the "
                                  "pool in Git, or use maxSurge: 0 so an old machine is deleted first)");
}

TEST_CASE("paused: nothing happens, not even a repair or a release")
{
    Site s = one_machine();
    s.provision();
    s.m().paused = true;
    s.claims.erase_machine("uid-m1");
    s.m().deleting = true;
    auto d = s.step();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.reason == "Paused");
    CHECK_FALSE(d.writes.any());
    CHECK(d.message == "reconciliation is paused (the Cluster's spec.paused or the cluster.x-k8s.io/paused annotation)");

    // Unpaused: the repair comes first, recorded as a release (a deleted
    // machine's node is only ever given back), then the release.
    s.m().paused = false;
    auto repair = s.step_apply();
    CHECK(repair.step == ClaimStep::adopt);
    CHECK(repair.writes.phase == ClaimPhase::releasing);
    CHECK(s.claims.by_machine("uid-m1")->phase == ClaimPhase::releasing);
    CHECK(s.step().step == ClaimStep::release);
}

TEST_CASE("Git removing or retargeting a claimed, running node holds it and says so")
{
    Site s = one_machine();
    s.provision();

    SUBCASE("removed from Git")
    {
        s.node("w-01").in_git = false;
        auto d = s.step();
        CHECK(d.step == ClaimStep::held_by_claim);
        CHECK(d.reason == "HeldByClaim");
        CHECK(d.message == "Git no longer declares node w-01, but it runs this machine: it is held until the machine "
                           "is deleted, then released");
        auto hold = node_hold(s.node("w-01"), s.claims);
        REQUIRE(hold);
        CHECK(hold->git_diverges);
        CHECK(hold->machine == "default/m1");
        CHECK(hold->message == "claimed by MetalsyncMachine default/m1 (cluster c1); Git no longer declares node w-01: "
                               "that waits until the machine is deleted and the node released");
    }
    SUBCASE("given another goal")
    {
        s.node("w-01").goal_is_available = false;
        CHECK(s.step().step == ClaimStep::held_by_claim);
    }
    SUBCASE("pool label removed")
    {
        s.node("w-01").labels.erase(k_pool_label);
        auto d = s.step();
        CHECK(d.step == ClaimStep::held_by_claim);
        CHECK(d.git_hold == "Git removed node w-01 from its pool (label metalsync.dev/pool)");
    }
    // Never an undeploy while the machine lives; the deletion releases it.
    CHECK(s.node("w-01").provision_state == "active");
    s.m().deleting = true;
    CHECK(s.step().step == ClaimStep::release);
}

TEST_CASE("the node planner is told which nodes the provider holds")
{
    Site s = one_machine(3);
    s.provision();
    auto held = node_hold(s.node("w-01"), s.claims);
    REQUIRE(held);
    CHECK_FALSE(held->git_diverges);
    CHECK(held->message == "claimed by MetalsyncMachine default/m1 (cluster c1)");
    CHECK_FALSE(node_hold(s.node("w-02"), s.claims));

    // A pool node Ironic says is someone's, unknown to the store: held too.
    s.node("w-03").instance_uuid = "ffff";
    auto unknown = node_hold(s.node("w-03"), s.claims);
    REQUIRE(unknown);
    CHECK(unknown->machine == "ffff");

    // Releasing: held while the machine's image may still run, handed back
    // to Git once Ironic tore it down.
    s.m().deleting = true;
    s.step_apply();
    CHECK(node_hold(s.node("w-01"), s.claims));
    s.node("w-01").provision_state = "clean failed";
    CHECK_FALSE(node_hold(s.node("w-01"), s.claims));
}

TEST_CASE("Git taking a claimed node back before it is deployed: the claim is given up, another chosen")
{
    Site s = one_machine();
    s.bootstraps[0] = bootstrap();
    auto claim = s.step_apply();
    REQUIRE(claim.node == "w-01");
    s.node("w-01").in_git = false;

    auto d = s.step_apply();
    CHECK(d.step == ClaimStep::unclaim);
    CHECK(d.reason == "NodeLeftPool");
    CHECK(d.writes.phase == ClaimPhase::releasing);
    CHECK(d.message.starts_with("Git no longer declares node w-01 before it was deployed: the claim is given up"));

    d = s.step_apply();
    CHECK(d.step == ClaimStep::forget);
    CHECK_FALSE(d.remove_finalizer);  // the machine lives on
    CHECK_FALSE(s.finalizer_removed);

    d = s.step_apply();
    CHECK(d.step == ClaimStep::claim);
    CHECK(d.node == "w-02");
}

TEST_CASE("upgrade: a new machine claims a spare while the old one releases; without a spare it says so")
{
    Site s = one_machine(2);
    s.provision();  // old machine m1 on w-01
    s.add(machine("m2"));

    SUBCASE("a spare")
    {
        s.m(0).deleting = true;
        auto decisions =
            reconcile_claims({{s.m(0), bootstrap()}, {s.m(1), bootstrap()}}, s.nodes, s.claims, "site-a");
        CHECK(decisions[0].step == ClaimStep::release);
        CHECK(decisions[0].node == "w-01");
        CHECK(decisions[1].step == ClaimStep::claim);
        CHECK(decisions[1].node == "w-02");
    }
    SUBCASE("no spare: maxSurge 0 deletes the old machine first")
    {
        s.nodes.pop_back();
        auto wait = s.step(1);
        CHECK(wait.reason == "NoFreeNode");
        CHECK(wait.message.starts_with("1 node matches, 0 free (1 claimed): w-01 claimed by default/m1; every matching "
                                       "node runs a machine of cluster c1: a rolling update needs a spare node"));
        s.m(0).deleting = true;
        s.step_apply(0);
        CHECK(s.step(1).message == "1 node matches, 0 free (1 releasing): w-01 being released by default/m1");
        s.node("w-01").provision_state = "cleaning";
        s.node("w-01").instance_uuid.clear();
        CHECK(s.step(1).reason == "NoFreeNode");  // cleaning, still the old machine's
        s.node("w-01").provision_state = "available";
        CHECK(s.step_apply(0).step == ClaimStep::forget);
        auto claim = s.step(1);
        CHECK(claim.step == ClaimStep::claim);
        CHECK(claim.node == "w-01");
    }
}

TEST_CASE("waiting for the cluster's infrastructure and an invalid spec claim nothing")
{
    Site s = one_machine();
    s.m().cluster_infrastructure_ready = false;
    auto d = s.step();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.reason == "WaitingForClusterInfrastructure");

    s.m().cluster_infrastructure_ready = true;
    s.m().spec.image.checksum = "sha256:abc";
    d = s.step();
    CHECK(d.step == ClaimStep::failed);
    CHECK(d.reason == "InvalidConfiguration");
    CHECK(d.failure_reason == "InvalidConfiguration");
    CHECK_FALSE(d.writes.any());

    s.m().spec.image.checksum = k_sha;
    s.m().spec.host_selector.match_expressions = {{"rack", SelectorOperator::not_in, {}}};
    d = s.step();
    CHECK(d.step == ClaimStep::failed);
    CHECK(d.message == "invalid hostSelector: matchExpressions[0]: NotIn needs at least one value");
}

TEST_CASE("the Machine's failure domain places the claim; the deprecated spec field is the fallback")
{
    Site s;
    s.nodes = {pool_node("a-01", "workers", "rack1"), pool_node("b-01", "workers", "rack2")};
    s.add(machine("m1"));
    s.m().spec.failure_domain = "rack1";
    s.m().machine_failure_domain = "rack2";
    auto d = s.step();
    CHECK(d.node == "b-01");
    CHECK(d.failure_domain == "rack2");

    s.m().machine_failure_domain.clear();
    CHECK(s.step().node == "a-01");
}

TEST_CASE("a failed deploy is terminal for the machine and released on deletion")
{
    Site s = one_machine();
    s.step_apply();
    s.step_apply();  // deploy
    s.node("w-01").provision_state = "deploy failed";
    s.node("w-01").last_error = "image download failed: 404";
    auto d = s.step();
    CHECK(d.step == ClaimStep::failed);
    CHECK(d.reason == "DeployFailed");
    CHECK(d.failure_reason == "CreateError");
    CHECK(d.message == "deploying node w-01 failed: image download failed: 404; delete the Machine to release the node");

    s.m().deleting = true;
    CHECK(s.step().step == ClaimStep::release);
}

TEST_CASE("a provisioned machine whose node is gone is not put on a fresh node")
{
    Site s = one_machine();
    s.provision();

    SUBCASE("undeployed behind metalsync's back")
    {
        s.node("w-01").provision_state = "available";
        auto d = s.step();
        CHECK(d.step == ClaimStep::failed);
        CHECK(d.reason == "NodeLost");
    }
    SUBCASE("every trace of the claim lost")
    {
        s.claims.erase_machine("uid-m1");
        s.m().status_node.clear();
        s.node("w-01").instance_uuid.clear();
        auto d = s.step();
        CHECK(d.step == ClaimStep::failed);
        CHECK(d.reason == "NodeLost");
        CHECK(d.failure_reason == "UpdateError");
        CHECK(s.claims.size() == 0);
    }
}

TEST_CASE("maintenance holds a deploy and a release")
{
    Site s = one_machine();
    s.step_apply();  // claim
    s.node("w-01").maintenance = true;
    auto d = s.step();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.reason == "NodeInMaintenance");

    s.node("w-01").maintenance = false;
    s.provision();
    s.node("w-01").maintenance = true;
    s.m().deleting = true;
    d = s.step();
    CHECK(d.step == ClaimStep::wait);
    CHECK(d.reason == "NodeInMaintenance");
    CHECK(d.writes.phase == ClaimPhase::releasing);  // recorded: the release has begun
}

TEST_CASE("a providerID naming another node is a conflict, not an overwrite")
{
    Site s = one_machine();
    s.provision();
    s.m().spec.provider_id = "metalsync://site-a/w-02";
    auto d = s.step();
    CHECK(d.step == ClaimStep::conflict);
    CHECK(d.reason == "ClaimConflict");
    CHECK_FALSE(d.writes.any());
}

TEST_CASE("validate_machine_spec follows a Git node's image rules")
{
    MachineSpec spec = machine("m").spec;
    CHECK(validate_machine_spec(spec));
    spec.image.url = "ftp://x";
    CHECK_FALSE(validate_machine_spec(spec));
    spec.image.url = "https://images.example/x.raw";
    spec.image.checksum = "https://images.example/SHA256SUMS";
    CHECK(validate_machine_spec(spec));
    spec.image.disk_format = "iso";
    CHECK_FALSE(validate_machine_spec(spec));
}

TEST_CASE("random losses, deletions and Ironic progress never put two machines on one node")
{
    // A deterministic random walk through the events the three places and
    // Ironic can suffer: losses, stale values restored from backups, deletions.
    // After every decision: a deploy only lands on an available node that
    // runs nobody's image and whose instance_uuid is the deploying machine's;
    // a machine is only reported running on a node Ironic gives to it; a
    // release never undeploys another machine's node, or a live machine's own.
    std::uint32_t seed = 20261202;
    auto next = [&seed](std::uint32_t n) {
        seed = seed * 1664525u + 1013904223u;  // fixed LCG: the same walk on every platform
        return (seed >> 8) % n;
    };
    Site s;
    for (int i = 0; i < 4; ++i) {
        s.nodes.push_back(pool_node("n" + std::to_string(i)));
    }
    std::map<std::string, std::string> image_of;   // node -> uid whose image runs (or is being written) there
    int machines_made = 0;
    int deploys = 0;
    int releases = 0;
    int conflicts = 0;
    int ironic_wins = 0;
    for (int pass = 0; pass < 3000; ++pass) {
        switch (next(10)) {
        case 8:  // a stale status.node (an old object restored from a backup)
            if (!s.machines.empty()) s.m(next(s.machines.size())).status_node = s.nodes[next(s.nodes.size())].name;
            break;
        case 9:  // a stale store record (an old store restored from a backup)
            if (!s.machines.empty()) {
                const Machine& mach = s.m(next(s.machines.size()));
                (void)s.claims.put({s.nodes[next(s.nodes.size())].name, mach.ref, mach.cluster, ClaimPhase::claimed});
            }
            break;
        case 0:
        case 1:
            for (auto& n : s.nodes) {
                if (n.provision_state == "deploying") n.provision_state = "active";
                else if (n.provision_state == "deleting") n.provision_state = "cleaning";
                else if (n.provision_state == "cleaning") {
                    n.provision_state = "available";
                    image_of.erase(n.name);
                    if (next(2) == 0) n.instance_uuid.clear();  // Ironic's tear-down may clear it
                }
            }
            break;
        case 2:
            if (!s.machines.empty()) s.claims.erase_machine(s.m(next(s.machines.size())).ref.uid);
            break;
        case 3:
            if (!s.machines.empty()) s.m(next(s.machines.size())).status_node.clear();
            break;
        case 4:
            s.nodes[next(s.nodes.size())].instance_uuid.clear();
            break;
        case 5:
            if (!s.machines.empty()) s.m(next(s.machines.size())).deleting = true;
            break;
        default:
            if (s.machines.size() < 5) s.add(machine("m" + std::to_string(machines_made++)));
            break;
        }
        std::vector<MachineInput> inputs;
        for (std::size_t i = 0; i < s.machines.size(); ++i) {
            inputs.push_back({s.machines[i], s.bootstraps[i]});
        }
        auto decisions = reconcile_claims(inputs, s.nodes, s.claims, "site-a");
        for (std::size_t i = 0; i < decisions.size(); ++i) {
            const ClaimDecision& d = decisions[i];
            const Machine& mach = s.machines[i];
            INFO("pass " << pass << ": " << mach.ref.name << " " << to_string(d.step) << " " << d.node << ": "
                         << d.message);
            if (d.conflict.find("(Ironic wins)") != std::string::npos) ++ironic_wins;
            if (!d.conflict.empty()) ++conflicts;
            if (d.writes.instance_uuid) {
                CHECK(s.node(d.node).instance_uuid.empty());
            }
            if (d.step == ClaimStep::deploy) {
                ++deploys;
                CHECK(s.node(d.node).provision_state == "available");
                CHECK(s.node(d.node).instance_uuid == mach.ref.uid);
                CHECK_FALSE(image_of.contains(d.node));
                image_of[d.node] = mach.ref.uid;
            }
            if (d.step == ClaimStep::report_provisioned || d.step == ClaimStep::in_sync ||
                d.step == ClaimStep::held_by_claim) {
                // Reported running on a node: Ironic must name this machine there.
                CHECK(s.node(d.node).instance_uuid == mach.ref.uid);
            }
            if (d.step == ClaimStep::release) {
                ++releases;
                CHECK(mach.deleting);
                CHECK((!image_of.contains(d.node) || image_of[d.node] == mach.ref.uid));
            }
            if (d.writes.store && !s.claims.put({d.node, mach.ref, mach.cluster, d.writes.phase})) {
                // The store refuses a node another record holds; the journal
                // comes first, so nothing else of the decision is applied
                // (the next pass retries, after the other machine let go).
                continue;
            }
            ClaimDecision rest = d;
            rest.writes.store = false;
            s.apply(rest, i);
        }
        // Machines whose finalizer went are gone from the API.
        for (std::size_t i = s.machines.size(); i-- > 0;) {
            if (decisions[i].remove_finalizer) {
                s.machines.erase(s.machines.begin() + static_cast<std::ptrdiff_t>(i));
                s.bootstraps.erase(s.bootstraps.begin() + static_cast<std::ptrdiff_t>(i));
            }
        }
        s.finalizer_removed = false;
    }
    // The walk did reach the interesting steps.
    CHECK(deploys > 20);
    CHECK(releases > 20);
    CHECK(conflicts > 20);
    CHECK(ironic_wins > 20);
}
