#include "daemon/kube_worker.hpp"

#include <chrono>
#include <cstdlib>
#include <set>

#include <spdlog/spdlog.h>

#include "daemon/provider_crds.hpp"
#include "reconcilers/provider/objects.hpp"
#include "reconcilers/kubernetes/cluster_reader.hpp"
#include "sources/document_parser.hpp"
#include "sources/revision_loader.hpp"
#include "reconcilers/kubernetes/cluster_status.hpp"

namespace metalsync {

using nlohmann::json;

namespace {

double unix_now()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string object_name(const ObjectRef& ref)
{
    return ref.namespace_.empty() ? ref.name : ref.namespace_ + "/" + ref.name;
}

bool quiet_state(KubeObjectState state)
{
    return state == KubeObjectState::in_sync || state == KubeObjectState::orphaned || state == KubeObjectState::kept ||
           state == KubeObjectState::error;
}

const char* event_for(KubeObjectState state)
{
    switch (state) {
    case KubeObjectState::orphaned: return "kube.object.orphaned";
    case KubeObjectState::kept: return "kube.object.kept";
    case KubeObjectState::waiting: return "kube.object.waiting";
    case KubeObjectState::deleting: return "kube.object.deleting";
    case KubeObjectState::error: return "kube.object.failed";
    default: return nullptr;
    }
}

std::string summary_line(const json& summary)
{
    std::string line = "phase " + (summary.value("phase", "").empty() ? std::string("-") : summary.value("phase", "")) +
                       ", ready " + summary.value("ready", "Unknown");
    if (summary.contains("controlPlane")) {
        const json& cp = summary["controlPlane"];
        line += "; control plane " + cp["ready"].dump() + "/" + cp["desired"].dump() + " ready, " +
                cp["updated"].dump() + " updated, " + cp.value("version", "");
    }
    const json& w = summary["workers"];
    line += "; workers " + w["ready"].dump() + "/" + w["desired"].dump() + " ready, " + w["updated"].dump() +
            " updated";
    if (summary.value("deleting", false)) {
        line += "; deleting, " + std::to_string(summary.value("machineCount", 0LL)) + " machines left";
    }
    return line;
}

} // namespace

static std::vector<KubeObject> provider_crd_objects()
{
    std::vector<std::shared_ptr<const ParsedFile>> files;
    for (const auto& file : provider_crd_files()) {
        files.push_back(std::make_shared<const ParsedFile>(parse_file(std::string(file.path), file.content)));
    }
    auto state = assemble_revision(files);
    if (!state) {
        // The build checks these files (schemas/crds/generate.py --check); a
        // broken one is a build defect, reported rather than half-installed.
        spdlog::error("provider: the built-in CRDs do not load: {}", state.error().empty() ? std::string("?")
                                                                                             : state.error().front().to_string());
        return {};
    }
    for (auto& crd : state->kube_objects) {
        // Deleting a CRD deletes every object of its kind: never pruned, also
        // when the provider is disabled later.
        crd.body["metadata"]["annotations"][k_kube_prune_annotation] = "disabled";
    }
    return std::move(state->kube_objects);
}

KubeWorker::KubeWorker(KubeWorkerSettings settings, std::vector<ObjectRef> inventory, EventSink events,
                       InventorySink save)
    : m_settings(std::move(settings)),
      m_inventory(std::move(inventory)),
      m_provider_crds(provider_crd_objects()),
      m_events(std::move(events)),
      m_save(std::move(save))
{
    m_snapshot.enabled = enabled();
}

KubeWorker::~KubeWorker() { stop(); }

bool KubeWorker::enabled() const
{
    // m_settings is read under m_mutex by callers on other threads; the
    // worker thread reads a copy.
    const char* env = std::getenv("KUBECONFIG");
    return !m_settings.kubeconfig.empty() || (env != nullptr && *env != '\0');
}

void KubeWorker::start()
{
    if (m_thread.joinable()) return;
    m_thread = std::thread([this] { thread_main(); });
}

void KubeWorker::stop()
{
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_cv.notify_all();
    if (m_thread.joinable()) m_thread.join();
}

void KubeWorker::set_desired(std::shared_ptr<const DesiredState> desired, std::string author)
{
    {
        std::lock_guard lock(m_mutex);
        if (desired == m_desired) return;
        m_desired = std::move(desired);
        m_author = std::move(author);
        m_wake = true;
    }
    m_cv.notify_all();
}

void KubeWorker::set_settings(KubeWorkerSettings settings)
{
    {
        std::lock_guard lock(m_mutex);
        m_settings = std::move(settings);
        m_wake = true;
    }
    m_cv.notify_all();
}

void KubeWorker::set_suspended(bool suspended)
{
    {
        std::lock_guard lock(m_mutex);
        m_suspended = suspended;
        m_wake = true;
    }
    m_cv.notify_all();
}

void KubeWorker::wake()
{
    {
        std::lock_guard lock(m_mutex);
        m_wake = true;
    }
    m_cv.notify_all();
}

std::shared_ptr<const provider::ProviderView> KubeWorker::provider_view() const
{
    std::lock_guard lock(m_mutex);
    return m_provider_view;
}

void KubeWorker::queue_provider_writes(std::vector<provider::KubeWrite> writes)
{
    if (writes.empty()) return;
    {
        std::lock_guard lock(m_mutex);
        for (auto& w : writes) {
            auto same = std::find_if(m_provider_writes.begin(), m_provider_writes.end(), [&](const provider::KubeWrite& q) {
                return q.op == w.op && q.kind == w.kind && q.namespace_ == w.namespace_ && q.name == w.name;
            });
            if (same != m_provider_writes.end()) {
                *same = std::move(w);
            } else {
                m_provider_writes.push_back(std::move(w));
            }
        }
        m_wake = true;
    }
    m_cv.notify_all();
}

provider::ProviderView KubeWorker::read_provider_view(KubeClient& client)
{
    provider::ProviderView view;
    view.read_at = unix_now();
    const auto capi = client.preferred_version("cluster.x-k8s.io");
    view.v1beta2_contract = capi.value_or("v1beta2") != "v1beta1" && capi.value_or("v1beta2") != "v1alpha4";
    const std::string capi_version = std::string("cluster.x-k8s.io/") + capi.value_or("v1beta2");
    std::vector<json> lists[4];
    const std::pair<std::string, std::string> kinds[4] = {{provider::k_provider_api_version, "MetalsyncMachine"},
                                                          {provider::k_provider_api_version, "MetalsyncCluster"},
                                                          {capi_version, "Machine"},
                                                          {capi_version, "Cluster"}};
    for (int i = 0; i < 4; ++i) {
        auto listed = client.list(kinds[i].first, kinds[i].second);
        if (!listed) {
            view.error = "cannot list " + kinds[i].second + "s: " + listed.error().describe();
            return view;
        }
        lists[i] = std::move(*listed);
    }
    view = provider::assemble_view(lists[0], lists[1], lists[2], lists[3]);
    view.read_at = unix_now();
    view.v1beta2_contract = capi.value_or("v1beta2") != "v1beta1" && capi.value_or("v1beta2") != "v1alpha4";
    // Bootstrap data, for machines still to be deployed only: once a node
    // runs the machine, its join token is nobody's business here.
    for (auto& mv : view.machines) {
        if (mv.bootstrap_secret.empty() || mv.machine.deleting || mv.machine.provisioned || !mv.problem.empty()) continue;
        auto secret = client.get(ObjectRef{"v1", "Secret", mv.machine.ref.namespace_, mv.bootstrap_secret});
        if (!secret) {
            view.complete = false;
            view.error = "cannot read bootstrap data Secret " + mv.machine.ref.namespace_ + "/" + mv.bootstrap_secret +
                         ": " + secret.error().describe();
            continue;
        }
        if (!*secret) continue;  // not written yet: the machine waits for it
        auto data = provider::bootstrap_from_secret(**secret);
        if (!data) {
            mv.bootstrap_problem = "bootstrap data Secret " + mv.bootstrap_secret + ": " + data.error();
            continue;
        }
        mv.bootstrap = std::move(*data);
    }
    return view;
}

void KubeWorker::provider_pass(KubeClient& client, const std::string& revision)
{
    std::vector<provider::KubeWrite> writes;
    {
        std::lock_guard lock(m_mutex);
        writes.swap(m_provider_writes);
    }
    for (const auto& w : writes) {
        const ObjectRef ref{provider::k_provider_api_version, w.kind, w.namespace_, w.name};
        ApiResult<json> done = std::unexpected(ApiError{});
        switch (w.op) {
        case provider::KubeWrite::Op::set_finalizers:
            done = client.patch(ref, json{{"metadata", {{"finalizers", w.value}, {"resourceVersion", w.resource_version}}}},
                                PatchType::merge, provider::k_provider_field_manager);
            break;
        case provider::KubeWrite::Op::set_provider_id:
            done = client.patch(ref, json{{"spec", {{"providerID", w.value}}}}, PatchType::merge,
                                provider::k_provider_field_manager);
            break;
        case provider::KubeWrite::Op::apply_status: {
            json body = {{"apiVersion", provider::k_provider_api_version},
                         {"kind", w.kind},
                         {"metadata", {{"name", w.name}, {"namespace", w.namespace_}}},
                         {"status", w.value}};
            ApplyOptions options;
            options.subresource = "status";
            auto applied = client.apply(body, provider::k_provider_field_manager, options);
            if (applied) {
                done = std::move(applied->object);
            } else {
                done = std::unexpected(applied.error());
            }
            break;
        }
        }
        const std::string key = w.describe();
        if (done) {
            spdlog::debug("provider: wrote {}", key);
            m_provider_write_errors.erase(key);
            continue;
        }
        const int code = done.error().http_status;
        if (code == 404 || code == 409) {
            // Gone, or changed since it was read: the next pass decides again.
            spdlog::debug("provider: {}: {}", key, done.error().describe());
            continue;
        }
        const std::string message = done.error().describe();
        if (m_provider_write_errors[key] != message) {
            m_provider_write_errors[key] = message;
            spdlog::warn("provider: cannot write {}: {}", key, message);
            emit(w.kind, w.namespace_ + "/" + w.name, "provider.write.failed", "cannot write " + key + ": " + message,
                 revision, false);
        }
    }
    auto view = std::make_shared<provider::ProviderView>(read_provider_view(client));
    if (!view->error.empty()) {
        spdlog::debug("provider: {}", view->error);
    }
    {
        std::lock_guard lock(m_mutex);
        m_provider_view = std::move(view);
    }
    if (m_provider_listener) m_provider_listener();
}

void KubeWorker::set_provider_machines(std::map<std::string, nlohmann::json> machines)
{
    std::lock_guard lock(m_mutex);
    m_provider_machines = std::move(machines);
}

std::map<std::string, nlohmann::json> KubeWorker::provider_machines() const
{
    std::lock_guard lock(m_mutex);
    return m_provider_machines;
}

KubeSnapshot KubeWorker::snapshot() const
{
    std::lock_guard lock(m_mutex);
    return m_snapshot;
}

void KubeWorker::thread_main()
{
    while (true) {
        {
            std::lock_guard lock(m_mutex);
            if (m_stop) return;
            m_wake = false;
        }
        try {
            run_pass();
        } catch (const std::exception& e) {
            spdlog::error("kubernetes: pass failed: {}", e.what());
        }
        std::unique_lock lock(m_mutex);
        std::chrono::milliseconds delay = m_settled ? m_settings.resync : m_settings.progress;
        if (!m_snapshot.error.empty()) delay = std::min(m_settings.resync, std::chrono::milliseconds(10000));
        m_cv.wait_for(lock, delay, [this] { return m_stop || m_wake; });
        if (m_stop) return;
    }
}

void KubeWorker::emit(const std::string& kind, const std::string& name, const std::string& event,
                      const std::string& message, const std::string& revision, bool from_commit)
{
    if (!m_events) return;
    Event e;
    e.time = unix_now();
    e.object_kind = kind;
    e.object_name = name;
    e.name = event;
    e.message = message;
    e.revision = revision;
    if (from_commit) {
        std::lock_guard lock(m_mutex);
        e.author = m_author;
    }
    m_events(e);
}

bool KubeWorker::ensure_client(KubeSnapshot& next, const KubeWorkerSettings& settings)
{
    const std::string key = settings.kubeconfig.string() + "|" + settings.context + "|" +
                            std::to_string(settings.timeout.count());
    if (m_client && key == m_client_key) return true;
    m_client.reset();
    auto connection = load_kubeconfig(settings.kubeconfig, settings.context);
    if (!connection) {
        next.error = connection.error();
        return false;
    }
    if (connection->server.starts_with("http://") &&
        (!connection->bearer_token.empty() || !connection->token_file.empty())) {
        // kubectl refuses this outright; we only warn, for test and lab setups.
        spdlog::warn("kubernetes: {} is plain http: the bearer token of {} crosses the network unencrypted",
                     connection->server, connection->file.string());
    }
    m_client = std::make_unique<KubeClient>(std::move(*connection), settings.timeout);
    m_observer.forget();
    m_client_key = key;
    return true;
}

void KubeWorker::run_pass()
{
    KubeWorkerSettings settings;
    std::shared_ptr<const DesiredState> desired;
    std::vector<ObjectRef> inventory;
    bool suspended = false;
    {
        std::lock_guard lock(m_mutex);
        settings = m_settings;
        desired = m_desired;
        inventory = m_inventory;
        suspended = m_suspended;
    }
    KubeSnapshot next;
    {
        std::lock_guard lock(m_mutex);
        next.enabled = enabled();
        next.last_success = m_snapshot.last_success;
    }
    next.last_pass = unix_now();
    const std::string revision = desired ? desired->revision : std::string{};
    next.revision = revision;

    auto publish = [&](bool settled) {
        if (!next.error.empty() && next.error != m_last_error_reported) {
            spdlog::warn("kubernetes: {}", next.error);
            emit("Kubernetes", "api-server", "kube.unreachable", next.error, revision, false);
        } else if (next.error.empty() && !m_last_error_reported.empty()) {
            spdlog::info("kubernetes: the API server answers again");
            emit("Kubernetes", "api-server", "kube.reachable", "the API server answers again", revision, false);
        }
        m_last_error_reported = next.error;
        std::lock_guard lock(m_mutex);
        if (!next.error.empty()) {
            // Keep what was last known, marked stale by the error.
            next.objects = m_snapshot.objects;
            next.clusters = m_snapshot.clusters;
        } else {
            next.last_success = next.last_pass;
        }
        m_snapshot = std::move(next);
        m_settled = settled;
    };

    const bool has_objects = desired && !desired->kube_objects.empty();
    if (!next.enabled) {
        if (has_objects) {
            next.error = "the repository has Kubernetes objects but no kubeconfig is configured (kubernetes.kubeconfig)";
        }
        publish(true);
        return;
    }
    if (!ensure_client(next, settings)) {
        publish(false);
        return;
    }
    KubeClient& client = *m_client;
    client.set_qps(desired && desired->policy.limits.kubernetes_qps
                       ? std::min(settings.qps, *desired->policy.limits.kubernetes_qps)
                       : settings.qps);
    if (!desired) {
        next.connected = true;
        publish(true);
        return;
    }

    // Git's objects, and the provider's CRDs when the provider is enabled
    // (unless Git carries them itself: then Git's copy is the one applied).
    std::vector<KubeObject> objects;
    if (settings.install_provider) {
        for (const auto& crd : m_provider_crds) {
            const bool in_git = std::any_of(desired->kube_objects.begin(), desired->kube_objects.end(),
                                            [&](const KubeObject& o) { return o.kind == crd.kind && o.name == crd.name; });
            if (!in_git) objects.push_back(crd);
        }
    }
    objects.insert(objects.end(), desired->kube_objects.begin(), desired->kube_objects.end());
    KubeObservation seen = m_observer.observe(
        client, KubeObserveInput{objects, inventory, revision, settings.instance, settings.default_namespace});
    if (seen.fatal) {
        next.error = seen.fatal->describe();
        publish(false);
        return;
    }
    KubePlanInput input{objects,
                        revision,
                        settings.instance,
                        settings.default_namespace,
                        std::move(seen.resources),
                        std::move(seen.live),
                        inventory,
                        desired->policy.prune,
                        std::move(seen.server_view),
                        std::move(seen.object_problems),
                        std::move(seen.kind_problems)};
    KubePlan plan = plan_kube(input);
    next.connected = true;
    next.dry_runs = seen.dry_runs;
    if (m_count_apply) {
        for (int i = 0; i < seen.dry_runs; ++i) m_count_apply("dry-run");
        for (const auto& [ref, problem] : input.object_problems) {
            if (problem.kind == KubeProblemKind::invalid) m_count_apply("refused");
        }
    }

    // The server's warnings on objects in Git (fields it drops, deprecated
    // versions), once per text.
    std::map<ObjectRef, std::string> warned;
    for (const auto& [ref, texts] : seen.warnings) {
        std::string joined;
        for (const auto& t : texts) joined += (joined.empty() ? "" : "; ") + t;
        warned[ref] = joined;
        if (m_last_warnings[ref] == joined) continue;
        spdlog::warn("kubernetes: {}: the API server warns: {}", describe(ref), joined);
        emit(ref.kind, object_name(ref), "kube.object.warning", "the API server warns: " + joined, revision);
    }
    m_last_warnings = std::move(warned);

    std::map<ObjectRef, KubeVerdict*> verdicts;
    for (auto& v : plan.verdicts) verdicts[v.ref] = &v;
    bool acted = false;
    bool transport_failed = false;
    for (auto& step : plan.steps) {
        KubeVerdict* verdict = verdicts.contains(step.ref) ? verdicts[step.ref] : nullptr;
        if (suspended) {
            if (verdict) verdict->message += " (suspended)";
            next.pending.push_back(step);
            continue;
        }
        if (transport_failed) {
            next.pending.push_back(step);
            continue;
        }
        if (step.verb == KubeStepVerb::apply) {
            auto applied = client.apply(step.body, k_kube_field_manager, ApplyOptions{});
            if (applied) {
                acted = true;
                m_observer.remember_applied(step.ref, step.body, applied->object, input.resources);
                if (m_count_apply) m_count_apply("success");
                spdlog::info("kubernetes: applied {}: {}", describe(step.ref), step.reason);
                const bool drift = verdict && verdict->state == KubeObjectState::drifted;
                emit(step.ref.kind, object_name(step.ref), drift ? "kube.object.drift-corrected" : "kube.object.applied",
                     step.reason, revision, !drift);
                if (step.ref.kind == "CustomResourceDefinition") client.invalidate_discovery();
                if (verdict && verdict->state != KubeObjectState::drifted) {
                    verdict->state = KubeObjectState::in_sync;
                    verdict->message = "applied: " + step.reason;
                }
            } else {
                transport_failed = applied.error().http_status == 0;
                if (m_count_apply) m_count_apply("error");
                next.pending.push_back(step);
                if (verdict) {
                    verdict->state = KubeObjectState::error;
                    verdict->message = "apply failed: " + applied.error().describe();
                }
            }
        } else {
            auto removed = client.remove(step.ref);
            if (removed) {
                acted = true;
                spdlog::info("kubernetes: deleted {} (removed from Git)", describe(step.ref));
                emit(step.ref.kind, object_name(step.ref), "kube.object.pruned", "removed from Git: delete requested",
                     revision);
                if (verdict) {
                    verdict->state = KubeObjectState::deleting;
                    verdict->message = "removed from Git; delete requested";
                }
            } else {
                transport_failed = removed.error().http_status == 0;
                next.pending.push_back(step);
                if (verdict) {
                    verdict->state = KubeObjectState::error;
                    verdict->message = "delete failed: " + removed.error().describe();
                }
            }
        }
    }

    // Events for states that persist (errors, orphans, waits), once per change.
    std::map<ObjectRef, std::string> reported;
    for (const auto& v : plan.verdicts) {
        const std::string key = std::string(to_string(v.state)) + "|" + v.message;
        reported[v.ref] = key;
        const auto before = m_last_reported.find(v.ref);
        if (before != m_last_reported.end() && before->second == key) continue;
        if (const char* name = event_for(v.state)) {
            emit(v.ref.kind, object_name(v.ref), name, v.message + (v.source.empty() ? "" : " (" + v.source + ")"),
                 revision);
        }
    }
    for (const auto& [ref, key] : m_last_reported) {
        if (!reported.contains(ref) && key.starts_with("deleting|")) {
            emit(ref.kind, object_name(ref), "kube.object.deleted", "gone from the cluster", revision);
        }
    }
    m_last_reported = std::move(reported);

    // The inventory: the objects in Git, and those still being pruned.
    if (!transport_failed) {
        std::vector<ObjectRef> owned = plan.inventory;
        for (const auto& v : plan.verdicts) {
            if (v.state == KubeObjectState::pruning || v.state == KubeObjectState::deleting) owned.push_back(v.ref);
        }
        std::sort(owned.begin(), owned.end());
        owned.erase(std::unique(owned.begin(), owned.end()), owned.end());
        bool changed = false;
        {
            std::lock_guard lock(m_mutex);
            changed = owned != m_inventory || revision != m_inventory_revision;
            if (changed) {
                m_inventory = owned;
                m_inventory_revision = revision;
            }
        }
        if (changed && m_save) m_save(revision, owned);
    }

    bool provider_settled = true;
    if (settings.install_provider && !transport_failed) {
        provider_pass(client, revision);
        std::lock_guard lock(m_mutex);
        provider_settled = m_provider_writes.empty() && m_provider_view && m_provider_view->complete;
        if (provider_settled) {
            for (const auto& mv : m_provider_view->machines) {
                const bool provisioned = mv.status.provisioned.value_or(false);
                provider_settled = provider_settled && provisioned && !mv.machine.deleting;
            }
        }
    }

    // Cluster API status of every Cluster in Git or ours.
    std::set<ObjectRef> cluster_refs;
    for (const auto& v : plan.verdicts) {
        if (v.ref.kind == "Cluster" && v.ref.api_version.starts_with("cluster.x-k8s.io/")) cluster_refs.insert(v.ref);
    }
    bool clusters_settled = true;
    ClusterReader reader(client);
    for (const auto& ref : cluster_refs) {
        std::string read_error;
        auto cluster_objects = reader.read(ref, read_error);
        if (!cluster_objects) {
            if (!read_error.empty()) {
                clusters_settled = false;
                spdlog::debug("kubernetes: status of Cluster {}: {}", object_name(ref), read_error);
            }
            continue;
        }
        json tree = cluster_tree(*cluster_objects);
        clusters_settled = clusters_settled && cluster_settled(tree);
        const std::string line = summary_line(cluster_summary(tree));
        const std::string key = "cluster|" + line;
        if (m_cluster_lines[ref] != key) {
            emit("Cluster", object_name(ref), "kube.cluster.status", line, revision, false);
            m_cluster_lines[ref] = key;
        }
        next.clusters.push_back(std::move(tree));
    }

    bool settled = !acted && clusters_settled && provider_settled && next.pending.empty();
    for (const auto& v : plan.verdicts) settled = settled && quiet_state(v.state);
    next.objects = std::move(plan.verdicts);
    publish(settled);
}

} // namespace metalsync
