// The Kubernetes planner and the cluster status tree: pure functions, tested
// on the seed's objects without a server.

#include <algorithm>

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
    KubePlanInput in{desired, "abc123", "rack-a", "default", served(), {}, {}, false, {}, {}, {}};
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
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false, {}, {}, {}};

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
    in.server_view[first.steps[0].ref] = crd;
    KubePlan second = plan_kube(in);
    REQUIRE(second.steps.size() == 1);
    CHECK(second.steps[0].ref.kind == "Widget");
    CHECK(second.steps[0].ref.namespace_ == "default");
}

TEST_CASE("an unknown kind is an error on that object only, naming the kind and apiVersion")
{
    std::vector<KubeObject> desired{object("cluster.x-k8s.io/v1beta", "Cluster", "typo", json()),
                                    object("v1", "Secret", "s", json(), "default")};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false, {}, {}, {}};
    KubePlan plan = plan_kube(in);
    REQUIRE(plan.steps.size() == 1);
    CHECK(plan.steps[0].ref.kind == "Secret");
    const KubeVerdict* v = verdict_of(plan, "typo");
    REQUIRE(v != nullptr);
    CHECK(v->state == KubeObjectState::error);
    CHECK(v->message.find("cluster.x-k8s.io/v1beta") != std::string::npos);
    CHECK(v->source == "clusters/c.yaml:1");
}

TEST_CASE("in sync when the server's dry-run answer equals the live object; otherwise applied, the field named")
{
    std::vector<KubeObject> desired{object("cluster.x-k8s.io/v1beta1", "MachineDeployment", "md", json{{"replicas", 3}})};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, false, {}, {}, {}};
    const KubePlan first = plan_kube(in);
    REQUIRE(first.steps.size() == 1);
    const ObjectRef ref = first.steps[0].ref;

    SUBCASE("the dry run answers what is live, server defaults and a new commit included: in sync")
    {
        json live = stored(first.steps[0].body);
        live["spec"]["minReadySeconds"] = 0;  // a default the server added
        live["status"] = json{{"replicas", 3}};
        in.live[ref] = live;
        json view = live;
        view["metadata"]["resourceVersion"] = "8";  // what a dry run answers may differ here, never mind
        view["metadata"]["annotations"][k_kube_revision_annotation] = "r2";
        view["status"] = json{{"replicas", 0}};
        in.server_view[ref] = view;
        in.revision = "r2";  // a later commit that did not touch this object
        const KubePlan plan = plan_kube(in);
        CHECK(plan.steps.empty());
        CHECK(plan.verdicts.at(0).state == KubeObjectState::in_sync);
    }
    SUBCASE("a webhook-defaulted value (Git 1.29.0, live v1.29.0) is in sync: the dry run answers v1.29.0 too")
    {
        std::vector<KubeObject> kcp{object("controlplane.cluster.x-k8s.io/v1beta1", "KubeadmControlPlane", "cp",
                                           json{{"version", "1.29.0"}}, "default")};
        KubePlanInput k{kcp, "r1", "metalsync", "default", served(), {}, {}, false, {}, {}, {}};
        const KubePlan created = plan_kube(k);
        REQUIRE(created.steps.size() == 1);
        json live = stored(created.steps[0].body);
        live["spec"]["version"] = "v1.29.0";
        k.live[created.steps[0].ref] = live;
        k.server_view[created.steps[0].ref] = live;
        CHECK(plan_kube(k).steps.empty());
        // Without the server's answer, the planner cannot know: it applies (the old field-subset rule re-applied forever).
        k.server_view.clear();
        CHECK(plan_kube(k).steps.size() == 1);
    }
    SUBCASE("a replica count changed in Git is applied, the reason names the field")
    {
        json live = stored(first.steps[0].body);
        in.live[ref] = live;
        json view = live;
        view["spec"]["replicas"] = 5;
        in.server_view[ref] = view;
        const KubePlan plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.verdicts.at(0).state == KubeObjectState::applying);
        CHECK(plan.steps[0].reason.find(".spec.replicas") != std::string::npos);
    }
    SUBCASE("a field another manager changed is drift: applied again, the manager named")
    {
        json live = stored(first.steps[0].body, "kubectl-edit");
        json view = live;
        live["spec"]["replicas"] = 7;
        in.live[ref] = live;
        in.server_view[ref] = view;
        const KubePlan plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.verdicts.at(0).state == KubeObjectState::drifted);
        CHECK(plan.verdicts.at(0).message.find("kubectl-edit") != std::string::npos);
        CHECK(plan.verdicts.at(0).message.find(".spec.replicas") != std::string::npos);
    }
    SUBCASE("a field metalsync stopped setting that the server would remove is a difference")
    {
        json live = stored(first.steps[0].body);
        live["spec"]["paused"] = true;
        in.live[ref] = live;
        in.server_view[ref] = stored(first.steps[0].body);
        const KubePlan plan = plan_kube(in);
        REQUIRE(plan.steps.size() == 1);
        CHECK(plan.steps[0].reason.find(".spec.paused") != std::string::npos);
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

TEST_CASE("a reference the server rewrote to the newest version of its contract is not a difference")
{
    const json git_ref{{"apiVersion", "infrastructure.cluster.x-k8s.io/v1alpha7"}, {"kind", "OpenStackCluster"},
                       {"name", "c"}};
    json live{{"apiVersion", "cluster.x-k8s.io/v1beta1"},
              {"kind", "Cluster"},
              {"metadata", {{"name", "c"}, {"namespace", "default"}}},
              {"spec", {{"infrastructureRef", git_ref}}}};
    json view = live;
    live["spec"]["infrastructureRef"]["apiVersion"] = "infrastructure.cluster.x-k8s.io/v1beta1";
    CHECK(drifted_fields(view, live).empty());
    SUBCASE("another group, kind or name is a difference")
    {
        live["spec"]["infrastructureRef"]["apiVersion"] = "infrastructure.example.com/v1beta1";
        CHECK(drifted_fields(view, live).size() == 1);
        live["spec"]["infrastructureRef"]["apiVersion"] = "infrastructure.cluster.x-k8s.io/v1beta1";
        live["spec"]["infrastructureRef"]["name"] = "d";
        CHECK_FALSE(drifted_fields(view, live).empty());
    }
    SUBCASE("the top-level apiVersion is never treated as a reference")
    {
        live["apiVersion"] = "cluster.x-k8s.io/v1beta2";
        live["spec"]["infrastructureRef"]["apiVersion"] = git_ref["apiVersion"];
        CHECK(drifted_fields(view, live).size() == 1);
    }
}

TEST_CASE("status and injected CA bundles are never sent")
{
    json spec = json::parse(R"({"group": "example.com", "conversion": {"strategy": "Webhook",
        "webhook": {"clientConfig": {"caBundle": "Cg==", "service": {"name": "w"}}}}})");
    KubeObject crd = object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "things.example.com", spec);
    crd.body["status"] = json{{"acceptedNames", json::object()}};
    const json plain = prepared_body(crd, "r1", "metalsync", "default", false, true);
    CHECK_FALSE(plain.contains("status"));
    CHECK(plain["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] == "Cg==");  // nobody injects it
    crd.body["metadata"]["annotations"] = json{{"cert-manager.io/inject-ca-from", "capi-system/capi-serving-cert"}};
    const json injected = prepared_body(crd, "r1", "metalsync", "default", false, true);
    CHECK_FALSE(injected["spec"]["conversion"]["webhook"]["clientConfig"].contains("caBundle"));
    CHECK(injected["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["name"] == "w");
    // Kinds without a status subresource keep what Git says.
    KubeObject cm = object("v1", "ConfigMap", "c", json(), "default");
    cm.body["status"] = "x";
    CHECK(prepared_body(cm, "r1", "metalsync", "default", true, false).contains("status"));
}

TEST_CASE("an object the server refuses holds the whole revision; waiting and failing objects do not")
{
    std::vector<KubeObject> desired{
        object("cluster.x-k8s.io/v1beta1", "Cluster", "c", json{{"paused", false}}, "default", 3),
        object("cluster.x-k8s.io/v1beta1", "MachineDeployment", "md", json{{"replicas", 3}}, "default", 9),
        object("v1", "Secret", "s", json(), "default", 20)};
    KubePlanInput in{desired, "r1", "metalsync", "default", served(), {}, {}, true, {}, {}, {}};
    const ObjectRef md{"cluster.x-k8s.io/v1beta1", "MachineDeployment", "default", "md"};
    const ObjectRef orphan{"v1", "Secret", "default", "gone"};
    in.live[orphan] = json{{"apiVersion", "v1"},
                           {"kind", "Secret"},
                           {"metadata", {{"name", "gone"}, {"namespace", "default"}, {"labels", {{k_kube_instance_label, "metalsync"}}}}}};

    SUBCASE("refused (Strict field validation): nothing applied or pruned, the refused object names its file:line")
    {
        in.object_problems[md] = KubeProblem{KubeProblemKind::invalid, ".spec.replicaz: field not declared in schema"};
        const KubePlan plan = plan_kube(in);
        CHECK(plan.steps.empty());
        const KubeVerdict* bad = verdict_of(plan, "md");
        REQUIRE(bad != nullptr);
        CHECK(bad->state == KubeObjectState::error);
        CHECK(bad->message.find("replicaz") != std::string::npos);
        CHECK(bad->source == "clusters/c.yaml:9");
        const KubeVerdict* held = verdict_of(plan, "c");
        REQUIRE(held != nullptr);
        CHECK(held->state == KubeObjectState::waiting);
        CHECK(held->message.find("MachineDeployment default/md (clusters/c.yaml:9)") != std::string::npos);
        const KubeVerdict* pruned = verdict_of(plan, "gone");
        REQUIRE(pruned != nullptr);
        CHECK(pruned->message.find("held") != std::string::npos);
    }
    SUBCASE("a 500 or a 403 on one object fails that object only")
    {
        in.object_problems[md] = KubeProblem{KubeProblemKind::failed, "conversion webhook failed"};
        const KubePlan plan = plan_kube(in);
        CHECK(verdict_of(plan, "md")->state == KubeObjectState::error);
        CHECK(plan.steps.size() == 3);  // Cluster and Secret created, the orphan pruned
    }
    SUBCASE("a kind that cannot be listed: its objects are errors, its inventory entries are kept unpruned")
    {
        in.kind_problems[resource_key("cluster.x-k8s.io/v1beta1", "MachineDeployment")] =
            KubeProblem{KubeProblemKind::failed, "permission denied: may not list machinedeployments"};
        const ObjectRef old_md{"cluster.x-k8s.io/v1beta1", "MachineDeployment", "default", "old"};
        in.inventory = {old_md};
        const KubePlan plan = plan_kube(in);
        CHECK(verdict_of(plan, "md")->state == KubeObjectState::error);
        CHECK(verdict_of(plan, "md")->message.find("permission denied") != std::string::npos);
        CHECK(std::find(plan.inventory.begin(), plan.inventory.end(), old_md) != plan.inventory.end());
        CHECK(verdict_of(plan, "c")->state == KubeObjectState::applying);
    }
    SUBCASE("a kind not yet in discovery waits instead of failing")
    {
        std::vector<KubeObject> later{object("infrastructure.cluster.x-k8s.io/v1alpha1", "MetalsyncCluster", "m", json(), "default")};
        KubePlanInput w{later, "r1", "metalsync", "default", served(), {}, {}, false, {}, {}, {}};
        w.kind_problems[resource_key("infrastructure.cluster.x-k8s.io/v1alpha1", "MetalsyncCluster")] =
            KubeProblem{KubeProblemKind::waiting, "not served yet"};
        CHECK(plan_kube(w).verdicts.at(0).state == KubeObjectState::waiting);
        w.kind_problems.clear();
        CHECK(plan_kube(w).verdicts.at(0).state == KubeObjectState::error);
    }
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
    KubePlanInput in{desired, "r9", "metalsync", "default", served(), live, {}, false, {}, {}, {}};

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
        KubePlanInput next{still, "r9", "metalsync", "default", served(), in.live, {}, true, {}, {}, {}};
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
    KubePlanInput in{desired, "r2", "metalsync", "default", served(), live, {md}, true, {}, {}, {}};
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
    objects.cluster = json{{"apiVersion", "cluster.x-k8s.io/v1beta1"},
                           {"metadata", {{"name", "bm"}, {"namespace", "default"}}},
                           {"spec",
                            {{"controlPlaneRef", {{"kind", "KubeadmControlPlane"}, {"name", "bm-cp"}}},
                             {"infrastructureRef", {{"kind", "OpenStackCluster"}, {"name", "bm"}}}}},
                           {"status",
                            {{"phase", "Provisioned"},
                             {"conditions", json::array({json{{"type", "Ready"}, {"status", "True"}}})}}}};
    objects.infrastructure = json{{"status", {{"ready", true}}}};
    objects.control_planes.push_back(json{{"apiVersion", "controlplane.cluster.x-k8s.io/v1beta1"},
                                          {"metadata", {{"name", "bm-cp"}}},
                                          {"spec", {{"replicas", 3}, {"version", "v1.28.0"}}},
                                          {"status", {{"replicas", 3}, {"updatedReplicas", 3}, {"readyReplicas", 3}}}});
    objects.machine_deployments.push_back(json{{"apiVersion", "cluster.x-k8s.io/v1beta1"},
                                               {"metadata", {{"name", "bm-workers"}}},
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

TEST_CASE("the cluster tree reads Cluster API v1beta2: Available, upToDateReplicas, initialization.provisioned")
{
    // Shapes from cluster-api v1.11 api/core/v1beta2 and api/controlplane/kubeadm/v1beta2.
    ClusterObjects objects;
    objects.cluster = json::parse(R"({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
        "metadata": {"name": "bm", "namespace": "default"},
        "spec": {"controlPlaneRef": {"apiGroup": "controlplane.cluster.x-k8s.io", "kind": "KubeadmControlPlane", "name": "bm-cp"},
                 "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "MetalsyncCluster", "name": "bm"}},
        "status": {"phase": "Provisioned", "initialization": {"infrastructureProvisioned": true, "controlPlaneInitialized": true},
                   "conditions": [{"type": "Available", "status": "True", "reason": "Available", "lastTransitionTime": "2026-12-02T10:00:00Z"}],
                   "deprecated": {"v1beta1": {"conditions": [{"type": "Ready", "status": "False"}]}}}})");
    objects.infrastructure = json::parse(R"({"apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha1",
        "status": {"initialization": {"provisioned": true}}})");
    objects.control_planes.push_back(json::parse(R"({"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
        "metadata": {"name": "bm-cp"}, "spec": {"replicas": 3, "version": "v1.29.0"},
        "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "upToDateReplicas": 2, "version": "v1.28.0",
                   "conditions": [{"type": "Available", "status": "True", "reason": "Available"}],
                   "deprecated": {"v1beta1": {"updatedReplicas": 2, "readyReplicas": 3}}}})"));
    objects.machine_deployments.push_back(json::parse(R"({"apiVersion": "cluster.x-k8s.io/v1beta2",
        "metadata": {"name": "bm-workers"}, "spec": {"clusterName": "bm", "replicas": 2, "template": {"spec": {"version": "v1.29.0"}}},
        "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "upToDateReplicas": 2,
                   "conditions": [{"type": "Available", "status": "True"}]}})"));

    json tree = cluster_tree(objects);
    CHECK(tree["ready"]["status"] == "True");  // Available, not the deprecated v1beta1 Ready
    CHECK(tree["infrastructure"]["kind"] == "MetalsyncCluster");
    CHECK(tree["infrastructure"]["ready"] == true);
    CHECK(tree["controlPlane"]["name"] == "bm-cp");
    CHECK(tree["controlPlane"]["replicas"]["updated"] == 2);
    CHECK(tree["controlPlane"]["replicas"]["available"] == 3);
    CHECK(tree["controlPlane"]["ready"]["status"] == "True");
    CHECK(cluster_summary(tree)["controlPlane"]["updated"] == 2);
    CHECK(cluster_summary(tree)["workers"]["updated"] == 2);
    CHECK_FALSE(cluster_settled(tree));  // one control-plane machine still to be replaced

    objects.control_planes[0]["status"]["upToDateReplicas"] = 3;
    tree = cluster_tree(objects);
    CHECK(cluster_settled(tree));
    objects.cluster["status"]["conditions"][0]["status"] = "False";
    CHECK_FALSE(cluster_settled(cluster_tree(objects)));
}
