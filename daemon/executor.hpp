#pragma once

// The rate-limited executor: a bounded pool of worker threads running short
// actions (one or a few REST calls each) under the limits operators set:
// Ironic requests per second (a RateLimiter shared with the Ironic clients,
// see use_rate_limiter), in-flight actions per BMC
// address, nodes in a provisioning transition at once (Ironic's own busy
// states plus our in-flight provisioning actions, as Metal3 counts), and
// one action per node at a time. The loop thread owns the queue; workers
// only take from it and hand back completions.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "reconcilers/action_result.hpp"
#include "reconcilers/http/rate_limiter.hpp"
#include "reconcilers/plan.hpp"

namespace metalsync {

struct ExecutorLimits {
    double ironic_qps = 10;  // requests/s, fed to the shared RateLimiter (set_limits)
    int max_provisioning = 20;
    int per_bmc = 1;
    int workers = 8;
};

struct QueuedAction {
    Action action;
    std::int64_t journal_id = 0;
    std::string revision;
    std::string author;
    std::string key;  // node + verb + params: identifies "the same action" across ticks
    bool recorded = false;  // the finish hook wrote its journal entry and event already
};

struct Completion {
    QueuedAction item;
    ActionResult result;
};

struct NodeWait {
    std::string waiting_on;  // "maxProvisioning (20 of 20 busy)", "perBMC 192.0.2.1:623", "ironicQPS", "worker"
    int position = 0;        // 1-based place in the queue
};

struct ExecutorStats {
    int queued = 0;
    int running = 0;
    int busy_provisioning = 0;  // counted against max_provisioning
    std::vector<std::string> saturated;
    std::uint64_t started = 0;
    std::uint64_t completed = 0;
};

class Executor {
public:
    // Runs one action on a worker thread. Made once per worker by the
    // factory, so each worker has its own HTTP connection.
    using Runner = std::function<ActionResult(const Action&)>;
    using RunnerFactory = std::function<Runner()>;
    // Called on the worker thread right before the action runs (journal: running).
    using StartHook = std::function<void(QueuedAction&)>;
    // Called on the worker thread as soon as the action returns, before the
    // loop takes the completion: what finished is recorded even if the
    // daemon dies before its next pass.
    using FinishHook = std::function<void(QueuedAction&, const ActionResult&)>;

    Executor(ExecutorLimits limits, RunnerFactory factory, StartHook on_start = {}, FinishHook on_finish = {});
    ~Executor();
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;

    void start();
    // No new actions start; waits up to `grace` for those in flight. Returns
    // the queued actions that never started (still pending in the journal).
    std::vector<QueuedAction> stop(std::chrono::milliseconds grace);

    // Also sets the rate limiter's rate to limits.ironic_qps (the workers count
    // is fixed at start()).
    void set_limits(const ExecutorLimits& limits);
    // The limiter the Ironic clients take a token from for every request
    // (IronicConnection::rate_limiter); call before start(). An action is
    // admitted when the limiter has a token for it, in turn with the requests
    // already waiting (else it waits on "ironicQPS"); the worker prepays that
    // token and the action's first request uses it, so an action costs its
    // requests and nothing more (one token when it sends none). Without this
    // call the executor has a limiter of its own, which then bounds action
    // starts only.
    void use_rate_limiter(std::shared_ptr<RateLimiter> limiter);
    [[nodiscard]] std::shared_ptr<RateLimiter> rate_limiter() const;
    // Nodes Ironic reports in busy provisioning states this tick.
    void set_ironic_busy(const std::set<std::string>& nodes);

    // Replaces the queue with `wanted` (in order). Actions already queued
    // with the same key keep their place and journal id (returned in
    // `kept`); queued actions no longer wanted are returned as cancelled.
    // Actions for nodes in flight, or whose completion has not been taken
    // yet, are refused (`refused`): the next tick re-plans them on an
    // observation made after that action.
    struct Replace {
        std::vector<QueuedAction> added;
        std::vector<QueuedAction> cancelled;
        std::vector<QueuedAction> refused;
    };
    Replace replace_queue(std::vector<QueuedAction> wanted);

    std::vector<Completion> take_completions();
    // Blocks until a completion is available or the timeout passes.
    bool wait_for_completion(std::chrono::milliseconds timeout);

    [[nodiscard]] bool is_queued_or_running(const std::string& node) const;
    [[nodiscard]] ExecutorStats stats() const;
    [[nodiscard]] std::map<std::string, NodeWait> waits() const;

    // The queue key of an action: same node, verb and parameters.
    static std::string key_of(const Action& action);

private:
    void worker_main();
    // With m_mutex held: index of the first runnable queued action, or -1;
    // records why others wait.
    int pick_locked(std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point& retry_at);
    int provisioning_count_locked() const;

    ExecutorLimits m_limits;
    RunnerFactory m_factory;
    StartHook m_on_start;
    FinishHook m_on_finish;
    mutable std::mutex m_mutex;
    std::condition_variable m_work_cv;
    std::condition_variable m_done_cv;
    std::deque<QueuedAction> m_queue;
    std::set<std::string> m_running_nodes;
    std::map<std::string, int> m_running_bmc;
    std::set<std::string> m_running_provisioning;
    std::set<std::string> m_ironic_busy;
    std::vector<Completion> m_completions;
    std::map<std::string, NodeWait> m_waits;
    std::set<std::string> m_saturated;
    std::shared_ptr<RateLimiter> m_limiter;
    std::optional<std::thread::id> m_admitting;  // the worker holding a place in m_limiter's line
    bool m_stopping = false;
    std::vector<std::thread> m_workers;
    std::uint64_t m_started = 0;
    std::uint64_t m_completed = 0;
};

} // namespace metalsync
