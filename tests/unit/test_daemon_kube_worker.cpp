// The Kubernetes worker against the fake API server (tests/fake_kube), pass
// by pass: what it sends, what it decides, what it reports. The fake does
// what a real kube-apiserver does where these tests look (its README names
// the Kubernetes and Cluster API sources it follows), so each case here is a
// way the worker would misbehave against a real management cluster.

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>

#include "daemon/kube_worker.hpp"
#include "sources/document_parser.hpp"
#include "sources/revision_loader.hpp"
#include "tests/unit/kube_fixture.hpp"

using namespace metalsync;
using namespace metalsync::test;
using nlohmann::json;

namespace {

std::shared_ptr<const DesiredState> desired_from(const std::string& yaml, const std::string& revision = "r1")
{
    std::vector<std::shared_ptr<const ParsedFile>> files{
        std::make_shared<const ParsedFile>(parse_file("clusters/test.yaml", yaml))};
    auto state = assemble_revision(files);
    REQUIRE_MESSAGE(state.has_value(), "the test's YAML does not load");
    state->revision = revision;
    return std::make_shared<const DesiredState>(std::move(*state));
}

struct WorkerRig {
    FakeApiServer& server;
    TempDir dir{"kube-worker"};
    std::mutex mutex;
    std::vector<Event> events;
    std::map<std::string, int> applies;  // by outcome, as the metric counts them
    std::unique_ptr<KubeWorker> worker;

    explicit WorkerRig(FakeApiServer& s, bool install_provider = false) : server(s)
    {
        const auto kubeconfig = dir.path() / "kubeconfig";
        write_file(kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: m\n  cluster: {server: \"" + s.url() +
                                   "\"}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: m\n  context: {cluster: m, "
                                   "user: u}\ncurrent-context: m\n");
        KubeWorkerSettings settings;
        settings.kubeconfig = kubeconfig;
        settings.instance = "lab";
        settings.qps = 0;
        settings.install_provider = install_provider;
        worker = std::make_unique<KubeWorker>(
            settings, std::vector<ObjectRef>{},
            [this](const Event& e) {
                std::lock_guard lock(mutex);
                events.push_back(e);
            },
            nullptr);
        worker->set_apply_counter([this](std::string_view outcome) { applies[std::string(outcome)]++; });
    }

    KubeSnapshot pass()
    {
        worker->run_pass();
        return worker->snapshot();
    }

    [[nodiscard]] bool has_event(const std::string& name, const std::string& text = {})
    {
        std::lock_guard lock(mutex);
        return std::any_of(events.begin(), events.end(), [&](const Event& e) {
            return e.name == name && e.message.find(text) != std::string::npos;
        });
    }
};

// Writes metalsync sent (dry runs apart).
std::vector<json> real_writes(const FakeApiServer& server)
{
    std::vector<json> out;
    for (const auto& r : server.requests()) {
        if (r.value("method", "") == "GET") continue;
        const auto dry = r["query"].find("dryRun");
        if (dry != r["query"].end() && !dry->empty() && (*dry)[0] == "All") continue;
        out.push_back(r);
    }
    return out;
}

int dry_runs(const FakeApiServer& server)
{
    int n = 0;
    for (const auto& r : server.requests()) {
        const auto dry = r["query"].find("dryRun");
        if (dry != r["query"].end() && !dry->empty() && (*dry)[0] == "All") ++n;
    }
    return n;
}

const KubeVerdict* verdict(const KubeSnapshot& s, const std::string& kind, const std::string& name)
{
    for (const auto& v : s.objects) {
        if (v.ref.kind == kind && v.ref.name == name) return &v;
    }
    return nullptr;
}

void inject(const FakeApiServer& server, const json& rule)
{
    HttpClient http;
    auto r = http.request("POST", server.url() + "/_fake/inject", {{"Content-Type", "application/json"}}, rule.dump(),
                          std::chrono::seconds(5));
    REQUIRE(r);
    REQUIRE(r->status == 200);
}

const char* const k_objects = R"(apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {a: "1"}
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineDeployment
metadata: {name: workers, namespace: default}
spec:
  clusterName: c
  replicas: 2
  selector: {matchLabels: {cluster.x-k8s.io/cluster-name: c}}
  template:
    metadata: {labels: {cluster.x-k8s.io/cluster-name: c}}
    spec:
      clusterName: c
      version: v1.29.0
      bootstrap: {dataSecretName: boot}
      infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, name: w}
---
apiVersion: v1
kind: Secret
metadata: {name: cloud, namespace: default}
stringData: {clouds.yaml: "clouds: {}\n"}
)";

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("kube worker: once applied, later passes send nothing but lists, and ask the server only when something changed")
    {
        FakeApiServer server;
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server);
        rig.worker->set_desired(desired_from(k_objects), "Ada");
        auto first = rig.pass();
        REQUIRE_MESSAGE(first.error.empty(), first.error);
        CHECK(real_writes(server).size() == 3);
        CHECK(rig.applies["success"] == 3);
        CHECK(rig.applies["dry-run"] == 3);  // each checked by the server before anything is created

        server.reset_requests();
        auto second = rig.pass();
        CHECK(second.error.empty());
        CHECK(real_writes(server).empty());
        CHECK(dry_runs(server) == 0);  // what was just applied is known in sync
        CHECK(rig.applies["dry-run"] == 3);
        for (const auto& v : second.objects) CHECK_MESSAGE(v.state == KubeObjectState::in_sync, describe(v.ref));

        SUBCASE("a change made by hand is found by one dry run and put back")
        {
            HttpClient http;
            auto r = http.request("PATCH", server.url() + "/apis/cluster.x-k8s.io/v1beta1/namespaces/default/machinedeployments/workers?fieldManager=kubectl-edit",
                                  {{"Content-Type", "application/merge-patch+json"}}, R"({"spec":{"replicas":7}})",
                                  std::chrono::seconds(5));
            REQUIRE(r);
            server.reset_requests();
            auto third = rig.pass();
            const auto writes = real_writes(server);
            REQUIRE(writes.size() == 1);
            CHECK(writes[0]["path"].get<std::string>().ends_with("/machinedeployments/workers"));
            CHECK(rig.has_event("kube.object.drift-corrected", "kubectl-edit"));
            {
                std::lock_guard lock(rig.mutex);
                for (const auto& e : rig.events) {
                    // Nobody's commit caused the correction: it names no author; the first applies name Ada's.
                    if (e.name == "kube.object.drift-corrected") CHECK(e.author.empty());
                    if (e.name == "kube.object.applied") CHECK(e.author == "Ada");
                }
            }
            server.reset_requests();
            rig.pass();
            CHECK(real_writes(server).empty());
        }
        SUBCASE("a new commit that changes nothing costs no dry run and no apply")
        {
            rig.worker->set_desired(desired_from(k_objects, "r2"), "Ada");
            server.reset_requests();
            rig.pass();
            CHECK(real_writes(server).empty());
            CHECK(dry_runs(server) == 0);
        }
    }

    TEST_CASE("kube worker: one kind that cannot be listed (403, 500) fails alone, the rest is applied")
    {
        FakeApiServer server;
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server);
        rig.worker->set_desired(desired_from(k_objects), "Ada");

        SUBCASE("403 from RBAC on the MachineDeployment list: a permissions problem naming the resource")
        {
            inject(server, json{{"method", "GET"}, {"path", "/apis/cluster.x-k8s.io/v1beta1/machinedeployments"},
                                {"code", 403}, {"count", -1}});
            const auto s = rig.pass();
            CHECK(s.error.empty());  // not "API server unreachable"
            CHECK(s.connected);
            const KubeVerdict* md = verdict(s, "MachineDeployment", "workers");
            REQUIRE(md != nullptr);
            CHECK(md->state == KubeObjectState::error);
            CHECK(md->message.find("permission denied") != std::string::npos);
            CHECK(md->message.find("machinedeployments.cluster.x-k8s.io") != std::string::npos);
            CHECK(md->source == "clusters/test.yaml:6");
            CHECK(verdict(s, "ConfigMap", "settings")->state == KubeObjectState::in_sync);
            CHECK(real_writes(server).size() == 2);
        }
        SUBCASE("500 from a conversion webhook restarting: retried next pass, the others applied")
        {
            inject(server, json{{"method", "GET"}, {"path", "/apis/cluster.x-k8s.io/v1beta1/machinedeployments"},
                                {"code", 500}, {"count", 1}});
            auto s = rig.pass();
            CHECK(s.error.empty());
            CHECK(verdict(s, "MachineDeployment", "workers")->state == KubeObjectState::error);
            CHECK(verdict(s, "Secret", "cloud")->state == KubeObjectState::in_sync);
            s = rig.pass();
            CHECK(verdict(s, "MachineDeployment", "workers")->state == KubeObjectState::in_sync);
        }
    }
}

namespace {

// A write by another field manager, as kubectl or a controller would send it.
void write_as(const FakeApiServer& server, const std::string& method, const std::string& path,
              const std::string& content_type, const std::string& body)
{
    HttpClient http;
    auto r = http.request(method, server.url() + path, {{"Content-Type", content_type}}, body, std::chrono::seconds(5));
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status < 300, r->body);
}

// Applies, then checks that the next two passes write nothing: what a real
// server does to the object (conversion, defaulting, canonical forms, list
// merging) must not look like a difference from Git.
void settles(WorkerRig& rig, const std::string& yaml, std::size_t writes)
{
    rig.worker->set_desired(desired_from(yaml), "Ada");
    auto first = rig.pass();
    REQUIRE_MESSAGE(first.error.empty(), first.error);
    CHECK(real_writes(rig.server).size() == writes);
    for (int pass = 2; pass <= 3; ++pass) {
        rig.server.reset_requests();
        auto s = rig.pass();
        CHECK_MESSAGE(real_writes(rig.server).empty(), "pass ", pass, " wrote ", real_writes(rig.server).size());
        for (const auto& v : s.objects) {
            CHECK_MESSAGE(v.state == KubeObjectState::in_sync, describe(v.ref), ": ", to_string(v.state), " ", v.message);
        }
    }
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("kube worker: what a real server rewrites is not re-applied forever")
    {
        FakeApiServer server;
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server);

        SUBCASE("v1beta1 in Git, v1beta2 stored: references come back at the contract's newest version")
        {
            settles(rig, R"(apiVersion: cluster.x-k8s.io/v1beta1
kind: Cluster
metadata: {name: c, namespace: default}
spec:
  clusterNetwork: {pods: {cidrBlocks: [192.168.0.0/16]}}
  infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1alpha7, kind: OpenStackCluster, name: c}
  controlPlaneRef: {apiVersion: controlplane.cluster.x-k8s.io/v1beta1, kind: KubeadmControlPlane, name: c-cp}
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta1
kind: KubeadmControlPlane
metadata: {name: c-cp, namespace: default}
spec:
  version: v1.29.0
  replicas: 1
  machineTemplate:
    infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1alpha7, kind: OpenStackMachineTemplate, name: c-cp}
  kubeadmConfigSpec:
    initConfiguration:
      nodeRegistration:
        kubeletExtraArgs: {cloud-provider: external}
)",
                    2);
        }
        SUBCASE("the KubeadmControlPlane webhook's v prefix: Git 1.29.0, live v1.29.0")
        {
            settles(rig, R"(apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata: {name: c-cp, namespace: default}
spec:
  version: 1.29.0
  replicas: 3
  machineTemplate:
    spec:
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: OpenStackMachineTemplate, name: c-cp}
)",
                    1);
        }
        SUBCASE("canonical quantities: Git 1000m and 1024Mi, stored 1 and 1Gi")
        {
            settles(rig, R"(apiVersion: v1
kind: ResourceQuota
metadata: {name: q, namespace: default}
spec:
  hard: {cpu: 1000m, memory: 1024Mi}
)",
                    1);
        }
        SUBCASE("a map-list item of another manager (Service ports) is no difference")
        {
            settles(rig, R"(apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  ports: [{name: https, port: 6443, protocol: TCP}]
)",
                    1);
            write_as(server, "PATCH", "/api/v1/namespaces/default/services/api?fieldManager=monitoring&force=true",
                     "application/apply-patch+yaml",
                     R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"api","namespace":"default"},)"
                     R"("spec":{"ports":[{"name":"metrics","port":9100,"protocol":"TCP"}]}})");
            server.reset_requests();
            auto s = rig.pass();
            CHECK(real_writes(server).empty());
            CHECK(verdict(s, "Service", "api")->state == KubeObjectState::in_sync);
        }
        SUBCASE("status in Git is not sent, and not compared")
        {
            settles(rig, R"(apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata: {name: c, namespace: default}
spec:
  clusterNetwork: {pods: {cidrBlocks: [192.168.0.0/16]}}
status:
  phase: Provisioned
)",
                    1);
        }
    }

    TEST_CASE("kube worker: a field the server does not know is an error with its file:line, and holds the revision")
    {
        FakeApiServer server;
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server);
        rig.worker->set_desired(desired_from(R"(apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {a: "1"}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata: {name: workers, namespace: default}
spec:
  clusterName: c
  replicaz: 3
  template:
    spec:
      clusterName: c
      bootstrap: {dataSecretName: boot}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: OpenStackMachineTemplate, name: w}
)"),
                               "Ada");
        const auto s = rig.pass();
        CHECK(s.error.empty());
        CHECK(real_writes(server).empty());  // not even the ConfigMap: the revision is held whole
        const KubeVerdict* md = verdict(s, "MachineDeployment", "workers");
        REQUIRE(md != nullptr);
        CHECK(md->state == KubeObjectState::error);
        CHECK(md->message.find("replicaz") != std::string::npos);
        CHECK(md->source == "clusters/test.yaml:6");
        const KubeVerdict* cm = verdict(s, "ConfigMap", "settings");
        REQUIRE(cm != nullptr);
        CHECK(cm->state == KubeObjectState::waiting);
        CHECK(cm->message.find("clusters/test.yaml:6") != std::string::npos);
        CHECK(rig.has_event("kube.object.failed", "replicaz"));
    }

    TEST_CASE("kube worker: a CRD's kind is applied once the CRD is Established, before discovery lists it")
    {
        FakeApiServerOptions options;
        options.discovery_lag = 60;
        FakeApiServer server(options);
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server);
        rig.worker->set_desired(desired_from(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: default}
spec: {size: 2}
)"),
                               "Ada");
        auto s = rig.pass();
        REQUIRE(verdict(s, "Widget", "w1") != nullptr);
        CHECK(verdict(s, "Widget", "w1")->state == KubeObjectState::waiting);
        bool applied = false;
        for (int pass = 0; pass < 10 && !applied; ++pass) {
            s = rig.pass();
            applied = verdict(s, "Widget", "w1")->state == KubeObjectState::in_sync;
            if (!applied) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        CHECK_MESSAGE(applied, verdict(s, "Widget", "w1")->message);
        HttpClient http;
        auto discovery = http.request("GET", server.url() + "/apis", {}, {}, std::chrono::seconds(5));
        REQUIRE(discovery);
        CHECK(discovery->body.find("example.com") == std::string::npos);  // still lagging: the test proves the point

        SUBCASE("a kind whose CRD is not in Git waits while discovery lags, instead of failing at once")
        {
            rig.worker->set_desired(desired_from(R"(apiVersion: example.com/v1
kind: Gadget
metadata: {name: g1, namespace: default}
)"),
                                   "Ada");
            s = rig.pass();
            REQUIRE(verdict(s, "Gadget", "g1") != nullptr);
            CHECK(verdict(s, "Gadget", "g1")->state == KubeObjectState::waiting);
        }
    }

    TEST_CASE("kube worker: a CA bundle cert-manager injects is not put back every pass")
    {
        FakeApiServer server;
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server);
        const std::string crd = R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.com
  annotations: {cert-manager.io/inject-ca-from: capi-system/capi-serving-cert}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Gizmo, plural: gizmos}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        caBundle: Cg==
        service: {name: webhook, namespace: capi-system, path: /convert}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
)";
        rig.worker->set_desired(desired_from(crd), "Ada");
        rig.pass();
        write_as(server, "PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.example.com?fieldManager=cainjector",
                 "application/merge-patch+json",
                 R"({"spec":{"conversion":{"webhook":{"clientConfig":{"caBundle":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}}}}})");
        server.reset_requests();
        auto s = rig.pass();
        CHECK(real_writes(server).empty());
        CHECK(verdict(s, "CustomResourceDefinition", "gizmos.example.com")->state == KubeObjectState::in_sync);
    }
}

TEST_SUITE("daemon")
{
    TEST_CASE("kube worker: with the provider enabled, its CRDs are installed and its kinds applied, never pruned")
    {
        FakeApiServer server;
        REQUIRE_MESSAGE(server.error().empty(), server.error());
        WorkerRig rig(server, true);
        rig.worker->set_desired(desired_from(R"(apiVersion: infrastructure.cluster.x-k8s.io/v1alpha1
kind: MetalsyncCluster
metadata: {name: lab, namespace: default}
spec:
  controlPlaneEndpoint: {host: 203.0.113.10, port: 6443}
)"),
                               "Ada");
        auto s = rig.pass();
        REQUIRE_MESSAGE(s.error.empty(), s.error);
        int crds = 0;
        for (const auto& w : real_writes(server)) {
            if (w["path"].get<std::string>().find("/customresourcedefinitions/metalsync") != std::string::npos) ++crds;
        }
        CHECK(crds == 3);
        for (const char* name : {"metalsyncclusters.infrastructure.cluster.x-k8s.io",
                                 "metalsyncmachines.infrastructure.cluster.x-k8s.io",
                                 "metalsyncmachinetemplates.infrastructure.cluster.x-k8s.io"}) {
            const KubeVerdict* v = verdict(s, "CustomResourceDefinition", name);
            REQUIRE_MESSAGE(v != nullptr, name);
            CHECK(v->source.starts_with("schemas/crds/"));
        }
        bool applied = false;
        for (int pass = 0; pass < 10 && !applied; ++pass) {
            s = rig.pass();
            applied = verdict(s, "MetalsyncCluster", "lab")->state == KubeObjectState::in_sync;
            if (!applied) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        CHECK_MESSAGE(applied, verdict(s, "MetalsyncCluster", "lab")->message);
        server.reset_requests();
        s = rig.pass();
        CHECK(real_writes(server).empty());

        SUBCASE("the provider's CRDs are kept when it is disabled and prune is on")
        {
            KubeWorkerSettings off;
            off.kubeconfig = rig.dir.path() / "kubeconfig";
            off.instance = "lab";
            off.qps = 0;
            rig.worker->set_settings(off);
            rig.worker->set_desired(desired_from("apiVersion: metalsync.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {prune: true}\n", "r2"),
                                    "Ada");
            server.reset_requests();
            s = rig.pass();
            for (const auto& w : real_writes(server)) {
                CHECK_MESSAGE(w["path"].get<std::string>().find("customresourcedefinitions") == std::string::npos,
                              w["method"].get<std::string>(), " ", w["path"].get<std::string>());
            }
            const KubeVerdict* kept = verdict(s, "CustomResourceDefinition", "metalsyncmachines.infrastructure.cluster.x-k8s.io");
            REQUIRE(kept != nullptr);
            CHECK(kept->state == KubeObjectState::kept);
        }
    }
}
