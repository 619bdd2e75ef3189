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

    explicit WorkerRig(FakeApiServer& s) : server(s)
    {
        const auto kubeconfig = dir.path() / "kubeconfig";
        write_file(kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: m\n  cluster: {server: \"" + s.url() +
                                   "\"}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: m\n  context: {cluster: m, "
                                   "user: u}\ncurrent-context: m\n");
        KubeWorkerSettings settings;
        settings.kubeconfig = kubeconfig;
        settings.instance = "lab";
        settings.qps = 0;
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
