#pragma once

// The Kubernetes half of the daemon: its own thread, so a slow or absent
// management cluster never delays the Ironic loop. Each pass: connect (from
// the kubeconfig), discover, list what metalsync may touch, plan (pure),
// apply and prune in order, read the Cluster API status of every cluster in
// Git, publish a snapshot for the control socket, record events.
//
// No journal: server-side apply and delete are idempotent, so a pass cut
// short by a crash is simply run again. The inventory of what was applied is
// kept in the store, so objects removed from Git while the daemon was down
// are still pruned.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/kubernetes/kube_client.hpp"
#include "reconcilers/kubernetes/kube_observer.hpp"
#include "reconcilers/kubernetes/kube_planner.hpp"
#include "reconcilers/provider/controller.hpp"
#include "sources/desired_state.hpp"
#include "store/records.hpp"

namespace metalsync {

struct KubeWorkerSettings {
    std::filesystem::path kubeconfig;  // empty: $KUBECONFIG, else disabled
    std::string context;
    std::string default_namespace = "default";
    std::string instance = "metalsync";
    double qps = 20;
    std::chrono::milliseconds resync{30000};    // a pass when nothing moves
    std::chrono::milliseconds progress{2000};   // a pass while something is applying, deleting or rolling out
    std::chrono::milliseconds timeout{30000};   // per request
    bool install_provider = false;              // apply the provider's CRDs (provider_crds.hpp) with Git's objects
};

struct KubeSnapshot {
    bool enabled = false;         // a kubeconfig is configured
    bool connected = false;       // the last pass reached the API server
    std::string error;            // connection or discovery failure of the last pass
    std::string revision;         // the revision the last pass applied
    double last_pass = 0;         // unix seconds
    double last_success = 0;
    std::vector<KubeVerdict> objects;
    std::vector<nlohmann::json> clusters;  // cluster_tree() of each Cluster in Git or ours
    std::vector<KubeStep> pending;         // steps of the last plan that did not succeed
    int dry_runs = 0;                      // dry-run applies the last pass sent (0 when all was known in sync)
};

class KubeWorker {
public:
    using EventSink = std::function<void(const Event&)>;
    using InventorySink = std::function<void(const std::string& revision, const std::vector<ObjectRef>&)>;

    KubeWorker(KubeWorkerSettings settings, std::vector<ObjectRef> inventory, EventSink events, InventorySink save);
    ~KubeWorker();
    KubeWorker(const KubeWorker&) = delete;
    KubeWorker& operator=(const KubeWorker&) = delete;

    void start();
    void stop();  // finishes the request in flight, then returns

    // A new desired state (or the same, after a tick): wakes the worker when it changed.
    void set_desired(std::shared_ptr<const DesiredState> desired, std::string author);
    void set_settings(KubeWorkerSettings settings);  // config-reload
    void set_suspended(bool suspended);
    void wake();
    // Called on the worker thread for every apply it sends: "success",
    // "error", "dry-run" (asked the server what it would store), "refused"
    // (the server refuses the object as Git has it). Set before start().
    void set_apply_counter(std::function<void(std::string_view outcome)> counter) { m_count_apply = std::move(counter); }

    // The Cluster API provider (settings.install_provider). Each pass reads
    // the provider's objects into a view for the loop (provider_view; the
    // listener is called, on the worker thread, when a new one is ready), and
    // first sends the writes the loop queued (queue_provider_writes: a later
    // write of the same field of the same object replaces an earlier one).
    [[nodiscard]] std::shared_ptr<const provider::ProviderView> provider_view() const;
    void set_provider_listener(std::function<void()> listener) { m_provider_listener = std::move(listener); }
    void queue_provider_writes(std::vector<provider::KubeWrite> writes);

    // What the provider knows of each MetalsyncMachine (namespace/name ->
    // {"ironicNode", "provisionState", "step", "reason", "message"}), set by
    // the loop for the socket's cluster views.
    void set_provider_machines(std::map<std::string, nlohmann::json> machines);
    [[nodiscard]] std::map<std::string, nlohmann::json> provider_machines() const;

    [[nodiscard]] KubeSnapshot snapshot() const;
    [[nodiscard]] bool enabled() const;

    // One pass, on the calling thread (the thread calls it; tests may too).
    void run_pass();

private:
    void thread_main();
    bool ensure_client(KubeSnapshot& next, const KubeWorkerSettings& settings);
    // Sends the queued writes, then reads the provider's objects into a new view.
    void provider_pass(KubeClient& client, const std::string& revision);
    provider::ProviderView read_provider_view(KubeClient& client);
    // `from_commit`: the event is a consequence of the revision (its author
    // is recorded); false for what nobody's commit caused (drift corrected,
    // the API server's reachability, Cluster API status).
    void emit(const std::string& kind, const std::string& name, const std::string& event, const std::string& message,
              const std::string& revision, bool from_commit = true);

    mutable std::mutex m_mutex;
    std::condition_variable m_cv;
    KubeWorkerSettings m_settings;
    std::shared_ptr<const DesiredState> m_desired;
    std::string m_author;
    bool m_wake = false;
    bool m_stop = false;
    bool m_suspended = false;
    KubeSnapshot m_snapshot;
    std::vector<ObjectRef> m_inventory;
    std::string m_inventory_revision;

    // Worker-thread state.
    std::unique_ptr<KubeClient> m_client;
    std::string m_client_key;  // kubeconfig path + context the client was made for
    std::map<ObjectRef, std::string> m_last_reported;  // last state/message reported per object, for events
    std::map<ObjectRef, std::string> m_cluster_lines;  // last status line reported per Cluster
    std::map<ObjectRef, std::string> m_last_warnings;  // last Warning texts reported per object
    KubeObserver m_observer;                        // dry-run answers known in sync, discovery misses
    const std::vector<KubeObject> m_provider_crds;  // parsed once from the built-in schemas/crds
    std::string m_last_error_reported;
    bool m_settled = false;

    std::shared_ptr<const provider::ProviderView> m_provider_view;
    std::vector<provider::KubeWrite> m_provider_writes;
    std::function<void()> m_provider_listener;
    std::map<std::string, nlohmann::json> m_provider_machines;
    std::map<std::string, std::string> m_provider_write_errors;  // last error per write, logged once

    EventSink m_events;
    std::function<void(std::string_view)> m_count_apply;
    InventorySink m_save;
    std::thread m_thread;
};

} // namespace metalsync
