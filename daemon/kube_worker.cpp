#include "daemon/kube_worker.hpp"

#include <chrono>
#include <cstdlib>
#include <set>

#include <spdlog/spdlog.h>

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

KubeWorker::KubeWorker(KubeWorkerSettings settings, std::vector<ObjectRef> inventory, EventSink events,
                       InventorySink save)
    : m_settings(std::move(settings)),
      m_inventory(std::move(inventory)),
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
                      const std::string& message, const std::string& revision)
{
    if (!m_events) return;
    Event e;
    e.time = unix_now();
    e.object_kind = kind;
    e.object_name = name;
    e.name = event;
    e.message = message;
    e.revision = revision;
    {
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
            emit("Kubernetes", "api-server", "kube.unreachable", next.error, revision);
        } else if (next.error.empty() && !m_last_error_reported.empty()) {
            spdlog::info("kubernetes: the API server answers again");
            emit("Kubernetes", "api-server", "kube.reachable", "the API server answers again", revision);
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

    // Kinds to look at: those in Git, those applied before, and Cluster API's for status.
    std::set<std::pair<std::string, std::string>> kinds;
    for (const auto& o : desired->kube_objects) kinds.insert({o.api_version, o.kind});
    for (const auto& r : inventory) kinds.insert({r.api_version, r.kind});
    std::map<std::string, ResourceInfo> resources;
    for (const auto& [api_version, kind] : kinds) {
        auto info = client.resource_for(api_version, kind);
        if (info) {
            resources[resource_key(api_version, kind)] = *info;
        } else if (info.error().http_status == 0 || info.error().retryable || info.error().http_status == 401 ||
                   info.error().http_status == 403) {
            next.error = info.error().describe();
            publish(false);
            return;
        }
    }

    std::map<ObjectRef, json> live;
    const std::string selector = std::string(k_kube_instance_label) + "=" + settings.instance;
    for (const auto& [key, info] : resources) {
        auto items = client.list(info.api_version, info.kind, "", selector);
        if (!items) {
            next.error = items.error().describe();
            publish(false);
            return;
        }
        for (auto& item : *items) {
            item["apiVersion"] = info.api_version;  // list items may omit them
            item["kind"] = info.kind;
            ObjectRef ref = ref_of(item);
            if (!info.namespaced) ref.namespace_.clear();
            live[ref] = std::move(item);
        }
    }
    // Objects in Git that exist without the label (made by hand, or by another tool).
    for (const auto& o : desired->kube_objects) {
        const auto served = resources.find(resource_key(o.api_version, o.kind));
        if (served == resources.end()) continue;
        ObjectRef ref{o.api_version, o.kind,
                      served->second.namespaced ? (o.namespace_.empty() ? settings.default_namespace : o.namespace_)
                                                : std::string{},
                      o.name};
        if (live.contains(ref)) continue;
        auto found = client.get(ref);
        if (!found) {
            if (found.error().http_status == 0 || found.error().retryable) {
                next.error = found.error().describe();
                publish(false);
                return;
            }
            continue;
        }
        if (*found) {
            (**found)["apiVersion"] = o.api_version;
            (**found)["kind"] = o.kind;
            live[ref] = std::move(**found);
        }
    }

    KubePlanInput input{desired->kube_objects, revision, settings.instance, settings.default_namespace,
                        resources, live, inventory, desired->policy.prune};
    KubePlan plan = plan_kube(input);
    next.connected = true;

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
            auto applied = client.apply(step.body, k_kube_field_manager, true);
            if (applied) {
                acted = true;
                spdlog::info("kubernetes: applied {}: {}", describe(step.ref), step.reason);
                emit(step.ref.kind, object_name(step.ref),
                     verdict && verdict->state == KubeObjectState::drifted ? "kube.object.drift-corrected"
                                                                             : "kube.object.applied",
                     step.reason, revision);
                if (step.ref.kind == "CustomResourceDefinition") client.invalidate_discovery();
                if (verdict && verdict->state != KubeObjectState::drifted) {
                    verdict->state = KubeObjectState::in_sync;
                    verdict->message = "applied: " + step.reason;
                }
            } else {
                transport_failed = applied.error().http_status == 0;
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

    // Cluster API status of every Cluster in Git or ours.
    std::set<ObjectRef> cluster_refs;
    for (const auto& v : plan.verdicts) {
        if (v.ref.kind == "Cluster" && v.ref.api_version.starts_with("cluster.x-k8s.io/")) cluster_refs.insert(v.ref);
    }
    bool clusters_settled = true;
    std::map<std::string, std::vector<json>> deployments_by_ns;
    for (const auto& ref : cluster_refs) {
        json cluster;
        if (auto it = live.find(ref); it != live.end() && !acted) {
            cluster = it->second;
        } else {
            auto got = client.get(ref);
            if (!got || !*got) continue;
            cluster = std::move(**got);
        }
        ClusterObjects objects;
        objects.cluster = cluster;
        auto ref_object = [&](const json& r) -> json {
            if (!r.is_object()) return json();
            ObjectRef target{r.value("apiVersion", ""), r.value("kind", ""),
                             r.value("namespace", ref.namespace_), r.value("name", "")};
            if (target.api_version.empty() || target.kind.empty() || target.name.empty()) return json();
            auto got = client.get(target);
            return got && *got ? **got : json();
        };
        const json spec = cluster.value("spec", json::object());
        objects.infrastructure = ref_object(spec.value("infrastructureRef", json()));
        if (json cp = ref_object(spec.value("controlPlaneRef", json())); cp.is_object()) {
            objects.control_planes.push_back(std::move(cp));
        }
        if (!deployments_by_ns.contains(ref.namespace_)) {
            auto mds = client.list(k_capi_api_version, "MachineDeployment", ref.namespace_);
            deployments_by_ns[ref.namespace_] = mds ? *mds : std::vector<json>{};
        }
        objects.machine_deployments = deployments_by_ns[ref.namespace_];
        if (auto machines = client.list(k_capi_api_version, "Machine", ref.namespace_,
                                        std::string(k_capi_cluster_name_label) + "=" + ref.name)) {
            objects.machines = std::move(*machines);
        }
        json tree = cluster_tree(objects);
        clusters_settled = clusters_settled && cluster_settled(tree);
        const std::string line = summary_line(cluster_summary(tree));
        const std::string key = "cluster|" + line;
        if (m_cluster_lines[ref] != key) {
            emit("Cluster", object_name(ref), "kube.cluster.status", line, revision);
            m_cluster_lines[ref] = key;
        }
        next.clusters.push_back(std::move(tree));
    }

    bool settled = !acted && clusters_settled && next.pending.empty();
    for (const auto& v : plan.verdicts) settled = settled && quiet_state(v.state);
    next.objects = std::move(plan.verdicts);
    publish(settled);
}

} // namespace metalsync
