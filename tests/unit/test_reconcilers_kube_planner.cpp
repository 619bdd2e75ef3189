// The Kubernetes planner and the cluster status tree: pure functions, tested
// on the seed's objects without a server.

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "reconcilers/kubernetes/cluster_status.hpp"
#include "reconcilers/kubernetes/kube_planner.hpp"

using namespace metalsync;
using nlohmann::json;

namespace {

KubeObject object(const std::string& api_version, const std::string& kind, const std::string& name, json spec,
                  const std::string& ns = "", int line = 1)
{
    KubeObject o;
    o.api_version = api_version;
    o.kind = kind;
    o.name = name;
    o.namespace_ = ns;
    o.body = json{{"apiVersion", api_version}, {"kind", kind}, {"metadata", {{"name", name}}}};
    if (!ns.empty()) o.body["metadata"]["namespace"] = ns;
    if (!spec.is_null()) o.body["spec"] = spec;
    o.source.file = "clusters/c.yaml";
    o.source.line = line;
    return o;
}

std::map<std::string, ResourceInfo> served()
{
    std::map<std::string, ResourceInfo> r;
    auto add = [&](const std::string& av, const std::string& kind, const std::string& res, bool ns) {
        r[resource_key(av, kind)] = ResourceInfo{av, kind, res, ns, false};
    };
    add("v1", "Namespace", "namespaces", false);
    add("v1", "Secret", "secrets", true);
    add("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", false);
    add("cluster.x-k8s.io/v1beta1", "Cluster", "clusters", true);
    add("cluster.x-k8s.io/v1beta1", "MachineDeployment", "machinedeployments", true);
    add("controlplane.cluster.x-k8s.io/v1beta1", "KubeadmControlPlane", "kubeadmcontrolplanes", true);
    return r;
}

// What the server would hold after metalsync applied `body`.
json stored(const json& body, const std::string& manager = "metalsync")
{
    json live = body;
    live["metadata"]["uid"] = "u-1";
    live["metadata"]["resourceVersion"] = "7";
    live["metadata"]["managedFields"] = json::array(
        {json{{"manager", manager}, {"operation", "Apply"}, {"fieldsV1", {{"f:spec", {{"f:replicas", json::object()}}}}}}});
    return live;
}

const KubeVerdict* verdict_of(const KubePlan& plan, const std::string& name)
{
    for (const auto& v : plan.verdicts) {
        if (v.ref.name == name) return &v;
    }
    return nullptr;
}

} // namespace

TEST_CASE("absent objects are applied: CRDs first, then Namespaces, then the rest, in file order")
{
    std::vector<KubeObject> desired{
        object("cluster.x-k8s.io/v1beta1", "Cluster", "c1", json{{"paused", false}}),
        object("v1", "Namespace", "capi", json()),
        object("cluster.x-k8s.io/v1beta1", "MachineDeployment", "md", json{{"replicas", 3}}, "capi"),
        object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com",
               json{{"group", "example.com"}, {"scope", "Namespaced"},
                    {"names", {{"kind", "Widget"}, {"plural", "widgets"}}},
                    {"versions", json::array({json{{"name", "v1"}}})}}),
    };
    KubePlanInput in{desired, "abc123", "rack-a", "default", served(), {}, {}, false};
    KubePlan plan = plan_kube(in);
    REQUIRE(plan.steps.size() == 4);
    CHECK(plan.steps[0].ref.kind == "CustomResourceDefinition");
    CHECK(plan.steps[1].ref.kind == "Namespace");
    CHECK(plan.steps[2].ref.kind == "Cluster");
    CHECK(plan.steps[3].ref.kind == "MachineDeployment");

    const json& body = plan.steps[2].body;
    CHECK(body["metadata"]["namespace"] == "default");  // defaulted from the config
    CHECK(body["metadata"]["labels"][k_kube_instance_label] == "rack-a");
    CHECK(body["metadata"]["annotations"][k_kube_source_annotation] == "clusters/c.yaml:1");
    CHECK(body["metadata"]["annotations"][k_kube_revision_annotation] == "abc123");
    CHECK(plan.steps[3].ref.namespace_ == "capi");
    CHECK_FALSE(plan.steps[1].body["metadata"].contains("namespace"));  // cluster-scoped
    CHECK(plan.inventory.size() == 4);
}

TEST_CASE("objects of a CRD of the same revision wait until it is Established")
{
    json crd_spec{{"group", "example.com"}, {"scope", "Namespaced"},
                  {"names", {{"kind", "Widget"}, {"plural", "widgets"}}},
                  {"versions", json::array({json{{"name", "v1"}}})}};
    std::vector<KubeObject> desired{object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com", crd_spec),
                                    object("example.com/v1", "Widget", "w1", json{{"size", 1}})};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false};

    KubePlan first = plan_kube(in);
    REQUIRE(first.steps.size() == 1);
    CHECK(first.steps[0].ref.kind == "CustomResourceDefinition");
    REQUIRE(verdict_of(first, "w1") != nullptr);
    CHECK(verdict_of(first, "w1")->state == KubeObjectState::waiting);
    CHECK(verdict_of(first, "w1")->message.find("widgets.example.com") != std::string::npos);

    // Established, but discovery has not caught up: the kind is known from the CRD itself.
    json crd = stored(first.steps[0].body);
    crd["status"]["conditions"] = json::array({json{{"type", "Established"}, {"status", "True"}}});
    in.live[first.steps[0].ref] = crd;
    KubePlan second = plan_kube(in);
    REQUIRE(second.steps.size() == 1);
    CHECK(second.steps[0].ref.kind == "Widget");
    CHECK(second.steps[0].ref.namespace_ == "default");
}

TEST_CASE("an unknown kind is an error on that object only, naming the kind and apiVersion")
{
    std::vector<KubeObject> desired{object("cluster.x-k8s.io/v1beta", "Cluster", "typo", json()),
                                    object("v1", "Secret", "s", json(), "default")};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false};
    KubePlan plan = plan_kube(in);
    REQUIRE(plan.steps.size() == 1);
    CHECK(plan.steps[0].ref.kind == "Secret");
    const KubeVerdict* v = verdict_of(plan, "typo");
    REQUIRE(v != nullptr);
    CHECK(v->state == KubeObjectState::error);
    CHECK(v->message.find("cluster.x-k8s.io/v1beta") != std::string::npos);
    CHECK(v->source == "clusters/c.yaml:1");
}

TEST_CASE("in sync, changed in Git, and drifted in the cluster")
{
    std::vector<KubeObject> desired{object("cluster.x-k8s.io/v1beta1", "MachineDeployment", "md", json{{"replicas", 3}})};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false};
    const KubePlan first = plan_kube(in);
    REQUIRE(first.steps.size() == 1);
    const ObjectRef ref = first.steps[0].ref;

    SUBCASE("what the server holds after the apply is in sync, server defaults and a new commit included")
    {
        json live = stored(first.steps[0].body);
        live["spec"]["minReadySeconds"] = 0;  // a default the server added
        in.live[ref] = live;
        in.revision = "r2";  // a later commit that did not touch this object
        const KubePlan plan = plan_kube(in);
        CHECK(plan.steps.empty());
        CHECK(plan.verdicts.at(0).state == KubeObjectState::in_sync);
    }
    SUBCASE("a replica count changed in Git is applied, the reason names the field")
    {
        in.live[ref] = stored(first.steps[0].body);
        std::vector<KubeObject> scaled{object("cluster.x-k8s.io/v1beta1", "MachineDeployment", "md", json{{"replicas", 5}})};
        KubePlanInput next{scaled, "r2", "metalsync", "default", served(), in.live, {}, false};
        const KubePlan plan = plan_kube(next);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.steps[0].body["spec"]["replicas"] == 5);
        CHECK(plan.verdicts.at(0).state == KubeObjectState::applying);
        CHECK(plan.steps[0].reason.find(".spec.replicas") != std::string::npos);
    }
    SUBCASE("a field another manager changed is drift: applied again, the manager named")
    {
        json live = stored(first.steps[0].body, "kubectl-edit");
        live["spec"]["replicas"] = 7;
        in.live[ref] = live;
        const KubePlan plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.verdicts.at(0).state == KubeObjectState::drifted);
        CHECK(plan.verdicts.at(0).message.find("kubectl-edit") != std::string::npos);
        CHECK(plan.verdicts.at(0).message.find(".spec.replicas") != std::string::npos);
    }
    SUBCASE("an object being deleted is not applied until it is gone")
    {
        json live = stored(first.steps[0].body);
        live["metadata"]["deletionTimestamp"] = "2026-11-25T10:00:00Z";
        live["metadata"]["finalizers"] = json::array({"machinedeployment.cluster.x-k8s.io"});
        in.live[ref] = live;
        const KubePlan plan = plan_kube(in);
        CHECK(plan.steps.empty());
        CHECK(plan.verdicts.at(0).state == KubeObjectState::waiting);
        CHECK(plan.verdicts.at(0).message.find("machinedeployment.cluster.x-k8s.io") != std::string::npos);
    }
}

TEST_CASE("Secret stringData compares as the base64 data the server stores")
{
    KubeObject secret = object("v1", "Secret", "cloud", json(), "default");
    secret.body["stringData"] = json{{"clouds.yaml", "clouds: {}\n"}};
    std::vector<KubeObject> desired{secret};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false};
    KubePlan first = plan_kube(in);
    REQUIRE(first.steps.size() == 1);
    json live = first.steps[0].body;
    live.erase("stringData");
    live["data"] = json{{"clouds.yaml", "Y2xvdWRzOiB7fQo="}};  // base64 of "clouds: {}\n"
    in.live[first.steps[0].ref] = live;
    CHECK(plan_kube(in).steps.empty());
    live["data"]["clouds.yaml"] = "b3RoZXI=";
    in.live[first.steps[0].ref] = live;
    CHECK(plan_kube(in).steps.size() == 1);
}

TEST_CASE("prune: off leaves orphans; on deletes the Cluster first, the rest after it is gone")
{
    auto live_object = [](const std::string& av, const std::string& kind, const std::string& name,
                          const std::string& ns) {
        json o{{"apiVersion", av},
               {"kind", kind},
               {"metadata", {{"name", name}, {"labels", {{k_kube_instance_label, "metalsync"}}}}}};
        if (!ns.empty()) o["metadata"]["namespace"] = ns;
        return o;
    };
    std::map<ObjectRef, json> live;
    const ObjectRef cluster{"cluster.x-k8s.io/v1beta1", "Cluster", "default", "c1"};
    const ObjectRef secret{"v1", "Secret", "default", "c1-cloud-config"};
    const ObjectRef ns{"v1", "Namespace", "", "team-a"};
    const ObjectRef kept{"v1", "Secret", "default", "keep-me"};
    const ObjectRef foreign{"v1", "Secret", "default", "not-ours"};
    live[cluster] = live_object(cluster.api_version, "Cluster", "c1", "default");
    live[secret] = live_object("v1", "Secret", secret.name, "default");
    live[ns] = live_object("v1", "Namespace", "team-a", "");
    live[kept] = live_object("v1", "Secret", kept.name, "default");
    live[kept]["metadata"]["annotations"][k_kube_prune_annotation] = "disabled";
    live[foreign] = json{{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", {{"name", "not-ours"}, {"namespace", "default"}}}};

    std::vector<KubeObject> desired;  // everything removed from Git
    KubePlanInput in{desired, "r9", "metalsync", "default", served(), live, {}, false};

    SUBCASE("prune off")
    {
        const KubePlan plan = plan_kube(in);
        CHECK(plan.steps.empty());
        CHECK(verdict_of(plan, "c1")->state == KubeObjectState::orphaned);
        CHECK(verdict_of(plan, "keep-me")->state == KubeObjectState::kept);
        CHECK(verdict_of(plan, "not-ours") == nullptr);  // never ours: not even reported
    }
    SUBCASE("prune on")
    {
        in.prune = true;
        KubePlan plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.steps[0].verb == KubeStepVerb::remove);
        CHECK(plan.steps[0].ref == cluster);
        CHECK(verdict_of(plan, "c1-cloud-config")->state == KubeObjectState::pruning);
        CHECK(verdict_of(plan, "c1-cloud-config")->message.find("Clusters") != std::string::npos);
        CHECK(verdict_of(plan, "keep-me")->state == KubeObjectState::kept);

        // Deleting: finalizers hold it; still nothing else goes.
        in.live[cluster]["metadata"]["deletionTimestamp"] = "2026-11-25T10:00:00Z";
        in.live[cluster]["metadata"]["finalizers"] = json::array({"cluster.cluster.x-k8s.io"});
        plan = plan_kube(in);
        CHECK(plan.steps.empty());
        CHECK(verdict_of(plan, "c1")->state == KubeObjectState::deleting);
        CHECK(verdict_of(plan, "c1")->message.find("cluster.cluster.x-k8s.io") != std::string::npos);

        // Gone: the Secret next, the Namespace after it.
        in.live.erase(cluster);
        plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.steps[0].ref == secret);
        in.live.erase(secret);
        plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.steps[0].ref == ns);
    }
    SUBCASE("a Namespace still holding objects in Git is never pruned")
    {
        in.prune = true;
        in.live.erase(cluster);
        in.live.erase(secret);
        std::vector<KubeObject> still{object("v1", "Secret", "app", json(), "team-a")};
        KubePlanInput next{still, "r9", "metalsync", "default", served(), in.live, {}, true};
        const KubePlan plan = plan_kube(next);
        for (const auto& step : plan.steps) CHECK(step.verb == KubeStepVerb::apply);
        CHECK(verdict_of(plan, "team-a")->state == KubeObjectState::kept);
    }
}

TEST_CASE("inventory entries still live are pruned even when the label was removed by hand")
{
    const ObjectRef md{"cluster.x-k8s.io/v1beta1", "MachineDeployment", "default", "old"};
    std::map<ObjectRef, json> live;
    live[md] = json{{"apiVersion", md.api_version}, {"kind", md.kind}, {"metadata", {{"name", "old"}, {"namespace", "default"}}}};
    std::vector<KubeObject> desired;
    KubePlanInput in{desired, "r2", "metalsync", "default", served(), live, {md}, true};
    const KubePlan plan = plan_kube(in);
    REQUIRE(plan.steps.size() == 1);
    CHECK(plan.steps[0].ref == md);
}

namespace {

json machine(const std::string& name, const std::string& cluster, const std::string& phase, const std::string& version,
             const std::string& md = "")
{
    json m{{"apiVersion", "cluster.x-k8s.io/v1beta1"},
           {"kind", "Machine"},
           {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"cluster.x-k8s.io/cluster-name", cluster}}}}},
           {"spec", {{"clusterName", cluster}, {"version", version}}},
           {"status", {{"phase", phase}, {"conditions", json::array({json{{"type", "Ready"}, {"status", "True"}}})}}}};
    if (md.empty()) {
        m["metadata"]["labels"]["cluster.x-k8s.io/control-plane"] = "";
    } else {
        m["metadata"]["labels"]["cluster.x-k8s.io/deployment-name"] = md;
    }
    return m;
}

} // namespace

TEST_CASE("the cluster tree groups machines under the control plane and their MachineDeployment")
{
    ClusterObjects objects;
    objects.cluster = json{{"metadata", {{"name", "bm"}, {"namespace", "default"}}},
                           {"spec",
                            {{"controlPlaneRef", {{"kind", "KubeadmControlPlane"}, {"name", "bm-cp"}}},
                             {"infrastructureRef", {{"kind", "OpenStackCluster"}, {"name", "bm"}}}}},
                           {"status",
                            {{"phase", "Provisioned"},
                             {"conditions", json::array({json{{"type", "Ready"}, {"status", "True"}}})}}}};
    objects.infrastructure = json{{"status", {{"ready", true}}}};
    objects.control_planes.push_back(json{{"metadata", {{"name", "bm-cp"}}},
                                          {"spec", {{"replicas", 3}, {"version", "v1.28.0"}}},
                                          {"status", {{"replicas", 3}, {"updatedReplicas", 3}, {"readyReplicas", 3}}}});
    objects.machine_deployments.push_back(json{{"metadata", {{"name", "bm-workers"}}},
                                               {"spec", {{"clusterName", "bm"}, {"replicas", 5},
                                                         {"template", {{"spec", {{"version", "v1.28.0"}}}}}}},
                                               {"status", {{"replicas", 4}, {"updatedReplicas", 4}, {"readyReplicas", 3},
                                                           {"phase", "ScalingUp"}}}});
    objects.machine_deployments.push_back(json{{"metadata", {{"name", "other-md"}}}, {"spec", {{"clusterName", "other"}}}});
    for (int i = 0; i < 3; ++i) objects.machines.push_back(machine("bm-cp-" + std::to_string(i), "bm", "Running", "v1.28.0"));
    for (int i = 0; i < 4; ++i) {
        objects.machines.push_back(machine("bm-w-" + std::to_string(i), "bm", i == 3 ? "Provisioning" : "Running", "v1.28.0",
                                           "bm-workers"));
    }
    objects.machines.push_back(machine("x-1", "other", "Running", "v1.28.0", "other-md"));

    const json tree = cluster_tree(objects);
    CHECK(tree["name"] == "bm");
    CHECK(tree["ready"]["status"] == "True");
    CHECK(tree["infrastructure"]["kind"] == "OpenStackCluster");
    CHECK(tree["infrastructure"]["ready"] == true);
    CHECK(tree["controlPlane"]["machines"].size() == 3);
    CHECK(tree["controlPlane"]["replicas"]["desired"] == 3);
    REQUIRE(tree["machineDeployments"].size() == 1);  // other-md belongs to another cluster
    CHECK(tree["machineDeployments"][0]["machines"].size() == 4);
    CHECK(tree["machineCount"] == 7);
    CHECK(tree["machinesByPhase"]["Provisioning"] == 1);
    CHECK(tree["machinesByPhase"]["Running"] == 6);
    CHECK_FALSE(cluster_settled(tree));  // workers: 5 desired, 3 ready

    const json summary = cluster_summary(tree);
    CHECK(summary["workers"]["desired"] == 5);
    CHECK(summary["workers"]["ready"] == 3);
    CHECK(summary["controlPlane"]["version"] == "v1.28.0");

    objects.machine_deployments[0]["status"] = json{{"replicas", 5}, {"updatedReplicas", 5}, {"readyReplicas", 5}};
    CHECK(cluster_settled(cluster_tree(objects)));
}
