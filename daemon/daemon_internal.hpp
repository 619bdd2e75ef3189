#pragma once

// The daemon's insides, shared by its three source files and nothing else:
//   daemon_run.cpp       start-up, the loop's outer pass, config reload, shutdown;
//   daemon_loop.cpp      one pass: poll Git, observe Ironic, plan, submit, record;
//   daemon_commands.cpp  the control socket's commands (reads of the loop's view).
// Not a public interface: run_daemon() in daemon_run.hpp is.

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <future>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "daemon/control_server.hpp"
#include "daemon/daemon_config.hpp"
#include "daemon/event_names.hpp"
#include "daemon/executor.hpp"
#include "daemon/kube_commands.hpp"
#include "daemon/kube_worker.hpp"
#include "daemon/logging.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/revision_intake.hpp"
#include "reconcilers/credentials.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "reconcilers/inspection.hpp"
#include "reconcilers/ironic/node_action_runner.hpp"
#include "reconcilers/node_memory_conversion.hpp"
#include "reconcilers/node_planner.hpp"
#include "reconcilers/openstack/clouds_config.hpp"
#include "sources/git_remote_url.hpp"
#include "sources/git_worker_process.hpp"
#include "store/store.hpp"

namespace metalsync::daemon_internal {

inline double unix_now()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline std::string short_id(const std::string& id) { return id.substr(0, 12); }

// How long after an interrupted action started its node must look untouched
// before the action is believed never to have reached Ironic.
inline constexpr double k_interrupted_settle_seconds = 3.0;

// The event that records an action's outcome: node.<verb>.requested or .failed.
Event completion_event(const QueuedAction& item, const ActionResult& result, double now);

// Wait before the next attempt at a failing step: 15 s, doubling, at most 10 min.
inline double retry_backoff_seconds(int attempts)
{
    return std::min(600.0, 15.0 * std::pow(2.0, std::max(0, attempts - 1)));
}

// Wait before observing an unreachable Ironic again: 1 s after the first
// failure, doubling, at most 30 s, each ±20% so that a fleet of bastions does
// not come back in step. The loop still ticks every second meanwhile (Git,
// completions, the socket); only the observation, and so the planning, waits.
inline double observe_backoff_seconds(int failures, double jitter)
{
    return std::min(30.0, std::pow(2.0, std::max(0, failures - 1))) * jitter;
}

// What the loop knows right now, for the control socket's readers.
struct NodeView {
    std::string provision_state;
    std::string goal;
    std::string condition;
    std::string message;
    std::string uuid;
    std::string bmc;
    std::string power_state;  // observed: "power on" | "power off" | empty (unknown, not enrolled)
    std::string power_goal;   // the spec's power: on | off | empty (not asked)
    bool maintenance = false;
    std::string maintenance_reason;
    nlohmann::json inspection;  // inspection_json(): collected hardware and the check against expect; null when none
};

// A MetalsyncMachine as the provider last judged it, for the socket's readers.
struct MachineView {
    std::string namespace_;
    std::string name;
    std::string cluster;
    std::string node;     // the claimed node; empty: none
    std::string step;     // to_string(ClaimStep)
    std::string reason;   // the Ready condition's reason
    std::string message;
};

struct LoopView {
    std::string revision;
    std::string revision_author;
    std::string revision_summary;
    double last_poll = 0;
    double last_poll_ok = 0;
    std::string git_error;
    std::string rejected_commit;
    std::vector<std::string> rejected_errors;
    std::string ironic_error;
    double ironic_down_since = 0;  // first failed observation of this outage; 0 when reachable
    double ironic_retry_at = 0;    // the next observation attempt during an outage
    int ironic_failures = 0;       // failed observations in a row
    double git_poll_since = 0;     // a poll running on the Git thread since then; 0 when none
    std::string store_error;  // the last failed write to the state database, until one succeeds
    std::map<std::string, NodeView> nodes;
    std::vector<MachineView> machines;  // the provider's MetalsyncMachines (provider.enabled)
    std::string provider_error;         // why the provider's last view is incomplete
    Plan plan;
    bool ready = false;
};

class Daemon {
public:
    explicit Daemon(DaemonConfig config) : m_config(std::move(config)) {}

    int run();

private:
    bool acquire_lock();
    void register_commands(ControlServer& server);
    void signal_thread_main(sigset_t set);
    void tick();
    void poll_git(double now);
    void take_git_poll(const std::expected<PollResult, GitError>& polled, double started, double now);
    bool observe(double now);
    void plan_and_submit(double now);
    // The Cluster API provider's pass (daemon_provider.cpp): claims written
    // to the store, its Ironic actions appended to `actions`, its Kubernetes
    // writes queued to the Kubernetes worker. Returns the nodes its claims
    // hold (node -> why), for the node planner, also when the provider is
    // disabled: a node running a machine is never taken back by Git's word.
    std::map<std::string, std::string> provider_step(const DesiredState& desired, double now,
                                                     std::vector<Action>& actions);
    void record_completions(double now);
    void request_wakeup();
    void update_gauges();
    std::optional<Event> note_inspection(const Completion& completion, NodeStatus& status, double now);
    void resolve_interrupted_actions(double now);
    void prune_history(double now);

    // A store write's outcome (true when it succeeded): a failure is logged (once per distinct
    // message) and shown in status until a later write succeeds.
    template <class T>
    bool checked(const std::expected<T, StoreError>& result, const char* what)
    {
        std::lock_guard lock(m_view_mutex);
        if (result) {
            if (!m_view.store_error.empty()) {
                spdlog::info("store: writes succeed again");
                m_view.store_error.clear();
            }
            return true;
        }
        std::string message = std::string(what) + ": " + result.error().message;
        if (message != m_view.store_error) spdlog::error("store: {} failed: {}", what, result.error().message);
        m_view.store_error = std::move(message);
        return false;
    }
    void wait_next_tick(std::chrono::milliseconds max_wait);
    std::chrono::milliseconds next_poll_delay(bool failed);
    ExecutorLimits effective_limits() const;
    NodeStatus status_of(const std::string& name);
    nlohmann::json node_json(const std::string& name, const NodeView& view, const NodeStatus* status,
                             const std::map<std::string, NodeWait>& waits) const;
    ControlReply reload_config();

    DaemonConfig m_config;
    std::optional<Store> m_store;
    std::optional<StoreReader> m_reader;
    std::recursive_mutex m_store_mutex;  // the writer is shared by the loop and the workers' start hook
    std::optional<GitSource> m_git;
    std::optional<RevisionIntake> m_intake;
    std::optional<IronicConnection> m_ironic_connection;
    std::optional<IronicClient> m_observer;
    std::optional<CredentialsDirectory> m_credentials;
    std::string m_hmac_key;
    std::unique_ptr<Executor> m_executor;
    std::unique_ptr<KubeWorker> m_kube;
    DaemonMetrics m_metrics{METALSYNC_VERSION, unix_now()};
    std::unique_ptr<MetricsServer> m_metrics_server;
    std::map<std::string, NodeStatus> m_status;  // node_status rows, cached
    std::map<std::string, InspectionMemory> m_inspections;  // inspection rows, cached; under m_store_mutex
    ObservedState m_observed;
    std::vector<JournalEntry> m_interrupted;                  // unfinished at start-up, until Ironic is observed
    std::map<std::string, std::string> m_restored_states;    // provision states of the store's last observation
    std::map<std::string, std::string> m_provider_reported;  // machine -> last step reported as an event

    mutable std::mutex m_view_mutex;
    LoopView m_view;

    std::mutex m_wake_mutex;
    std::condition_variable m_wake_cv;
    bool m_wake = false;
    std::atomic<bool> m_shutdown{false};
    std::atomic<bool> m_reload{false};
    std::atomic<bool> m_suspended{false};
    mutable std::mutex m_suspend_mutex;
    std::set<std::string> m_suspended_nodes;
    std::chrono::steady_clock::time_point m_next_poll{};
    std::atomic<bool> m_poll_now{false};  // reconcile-now: start a poll at the next pass
    std::atomic<bool> m_retry_now{false};  // reconcile-now: failed steps waiting out their backoff retry at once
    // The network half of a Git poll, on a thread of its own; see poll_git().
    std::future<std::expected<PollResult, GitError>> m_git_poll;
    std::chrono::steady_clock::time_point m_git_poll_started{};
    double m_git_poll_started_unix = 0;
    // Observation backoff while Ironic is unreachable.
    int m_observe_failures = 0;
    std::chrono::steady_clock::time_point m_next_observe{};
    double m_next_history_prune = 0;  // unix seconds
    std::atomic<bool> m_observe_now{false};  // reconcile-now: observe at the next pass, backoff or not
    int m_lock_fd = -1;
    std::mt19937 m_rng{std::random_device{}()};
};

} // namespace metalsync::daemon_internal
