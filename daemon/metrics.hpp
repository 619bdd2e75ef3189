#pragma once

// Prometheus metrics: a small thread-safe registry (counters, gauges,
// histograms with fixed buckets, each family with a fixed list of label
// names) rendered in the text exposition format 0.0.4, and DaemonMetrics,
// the metalsync_* metrics the daemon's loop updates.
//
// Cost model: updating a series is an atomic add on a handle the caller keeps
// (or a map lookup under the family's mutex when labels vary per call);
// render() walks the families in name order and each family's series in
// label order, so the output is stable from one scrape to the next.
// Registration errors (bad names, a label list that does not match) are
// programming errors and throw std::invalid_argument; updates never throw.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/executor.hpp"
#include "reconcilers/action_result.hpp"

namespace metalsync::metrics {

enum class MetricType { counter, gauge, histogram };

// [a-zA-Z_:][a-zA-Z0-9_:]*
[[nodiscard]] bool valid_metric_name(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved by Prometheus).
[[nodiscard]] bool valid_label_name(std::string_view name);

// Text-format pieces, public for tests and for anyone rendering by hand.
// Label values: \ " and newline escaped; HELP: \ and newline escaped. Both
// replace invalid UTF-8 with U+FFFD (Prometheus refuses the whole scrape
// otherwise, and label values come from Ironic and Git).
[[nodiscard]] std::string escape_label_value(std::string_view value);
[[nodiscard]] std::string escape_help(std::string_view help);
// Shortest text that reads back as the same double; integers without an
// exponent; NaN, +Inf, -Inf as Prometheus spells them.
[[nodiscard]] std::string format_value(double value);

namespace detail {
struct Series;
class Family;
} // namespace detail

// Handles: cheap to copy, stay valid after the family drops their label set
// (updates to a dropped series are simply not rendered).
class Counter {
public:
    Counter() = default;
    // Negative or NaN increments are ignored: a counter only goes up.
    void inc(double amount = 1) const;
    [[nodiscard]] double value() const;

private:
    friend class CounterFamily;
    explicit Counter(std::shared_ptr<detail::Series> series) : m_series(std::move(series)) {}
    std::shared_ptr<detail::Series> m_series;
};

class Gauge {
public:
    Gauge() = default;
    void set(double value) const;
    void inc(double amount = 1) const;
    void dec(double amount = 1) const { inc(-amount); }
    [[nodiscard]] double value() const;

private:
    friend class GaugeFamily;
    explicit Gauge(std::shared_ptr<detail::Series> series) : m_series(std::move(series)) {}
    std::shared_ptr<detail::Series> m_series;
};

class Histogram {
public:
    Histogram() = default;
    // NaN is ignored. A value equal to a bucket's upper bound counts in it (le).
    void observe(double value) const;
    [[nodiscard]] std::uint64_t count() const;
    [[nodiscard]] double sum() const;

private:
    friend class HistogramFamily;
    explicit Histogram(std::shared_ptr<detail::Series> series) : m_series(std::move(series)) {}
    std::shared_ptr<detail::Series> m_series;
};

using LabelValues = std::vector<std::string>;

class CounterFamily {
public:
    explicit CounterFamily(detail::Family& family) : m_family(family) {}
    // One value per label name, in the family's order.
    Counter labels(const LabelValues& values);
    Counter get() { return labels({}); }

private:
    detail::Family& m_family;
};

class GaugeFamily {
public:
    explicit GaugeFamily(detail::Family& family) : m_family(family) {}
    Gauge labels(const LabelValues& values);
    Gauge get() { return labels({}); }
    // Replaces every series at once: label sets not in `values` disappear.
    // A scrape sees either the old set or the new one, never a mix.
    void replace(const std::map<LabelValues, double>& values);

private:
    detail::Family& m_family;
};

class HistogramFamily {
public:
    explicit HistogramFamily(detail::Family& family) : m_family(family) {}
    Histogram labels(const LabelValues& values);
    Histogram get() { return labels({}); }

private:
    detail::Family& m_family;
};

class Registry {
public:
    Registry();
    ~Registry();
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // Registering a name again with the same type, labels (and buckets)
    // returns the same family; anything else throws std::invalid_argument,
    // as do invalid names and names that clash with a histogram's
    // _bucket/_sum/_count series. A family without labels has its one
    // series from the start, so it renders 0 before the first update.
    CounterFamily counter(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
    GaugeFamily gauge(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
    // `bounds`: finite, strictly increasing upper bounds; +Inf is added.
    HistogramFamily histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                              std::vector<std::string> label_names = {});

    // The whole exposition, "\n"-terminated lines.
    [[nodiscard]] std::string render() const;
    void render_to(std::string& out) const;

private:
    detail::Family& add(const std::string& name, const std::string& help, MetricType type,
                        std::vector<std::string> label_names, std::vector<double> bounds);

    mutable std::mutex m_mutex;
    std::map<std::string, std::unique_ptr<detail::Family>, std::less<>> m_families;
};

} // namespace metalsync::metrics

namespace metalsync {

// The daemon's metrics. Every method is safe from any thread and cheap: the
// per-tick "set" methods take totals the loop already has (a map with one
// entry per provision state, not per node).
class DaemonMetrics {
public:
    explicit DaemonMetrics(std::string version, double start_time_seconds);
    DaemonMetrics(const DaemonMetrics&) = delete;
    DaemonMetrics& operator=(const DaemonMetrics&) = delete;

    // One tick that observed Ironic and planned (poll + observe + plan + submit).
    void reconcile_finished(double seconds);
    // One completed action; `outcome` is "success" or an error type (see action_outcome).
    void action_finished(std::string_view verb, std::string_view outcome);
    // Nodes by Ironic provision state ("" for not enrolled); replaces the previous set.
    void set_nodes_by_state(const std::map<std::string, int>& counts);
    // Nodes by condition (at-goal, progressing, ...); every known condition is
    // always present, 0 when no node has it.
    void set_nodes_by_condition(const std::map<std::string, int>& counts);
    // Queued actions, and how many of them each limit holds back (limit names
    // as limit_of_wait returns them; known limits are always present).
    void set_queue(int depth, const std::map<std::string, int>& waiting_by_limit);
    // Limits that held an action back at the executor's last pick (0/1 per limit).
    void set_saturated(const std::vector<std::string>& limits);
    void set_running(int running_actions, int nodes_provisioning);
    // Everything above from the executor in one call (stats() and waits()).
    void set_executor(const ExecutorStats& stats, const std::map<std::string, NodeWait>& waits);
    // One Git poll: `fetch_seconds` is the time the poll took; `now` unix seconds.
    void git_poll(bool ok, double fetch_seconds, double now);
    // A new tip was evaluated: accepted into force, or rejected.
    void revision(bool accepted);
    // One Ironic call ("success", "unavailable", "locked", ...).
    void ironic_request(std::string_view outcome);
    // One observation of every node (ok or not) and how long it took.
    void observe_finished(bool ok, double seconds);
    void kube_apply(std::string_view outcome);
    void set_kube_objects(const std::map<std::string, int>& by_state);
    // The provider's MetalsyncMachines by their last step (claim, deploy,
    // in-sync, wait, release, failed ...), and each step taken.
    void set_provider_machines(const std::map<std::string, int>& by_step);
    void provider_step(std::string_view step);
    // Readiness as sd_notify reports it: a revision is in force.
    void set_ready(bool ready);
    void set_suspended(bool suspended);

    [[nodiscard]] std::string render() const { return m_registry.render(); }
    [[nodiscard]] metrics::Registry& registry() { return m_registry; }

    // "success", or the result's error type when it is one of the known ones,
    // else "error": label values must stay a small fixed set.
    [[nodiscard]] static std::string action_outcome(const ActionResult& result);
    // The executor's NodeWait::waiting_on text → a limit name: "ironicQPS",
    // "maxProvisioning", "perBMC", "workers", "node" (an action already in
    // flight for that node), "other".
    [[nodiscard]] static std::string limit_of_wait(std::string_view waiting_on);

private:
    metrics::Registry m_registry;
    metrics::Counter m_reconciles;
    metrics::Histogram m_reconcile_duration;
    metrics::CounterFamily m_actions;
    metrics::GaugeFamily m_nodes;
    metrics::GaugeFamily m_nodes_by_condition;
    metrics::Gauge m_queue_depth;
    metrics::GaugeFamily m_queue_waiting;
    metrics::GaugeFamily m_limit_saturated;
    metrics::Gauge m_actions_running;
    metrics::Gauge m_nodes_provisioning;
    metrics::Gauge m_git_last_success;
    metrics::Gauge m_git_last_poll;
    metrics::Histogram m_git_fetch_duration;
    metrics::Counter m_git_polls;
    metrics::Counter m_git_failures;
    metrics::Counter m_revisions_accepted;
    metrics::Counter m_revisions_rejected;
    metrics::CounterFamily m_ironic_requests;
    metrics::Histogram m_observe_duration;
    metrics::Counter m_observe_failures;
    metrics::CounterFamily m_kube_apply;
    metrics::GaugeFamily m_kube_objects;
    metrics::GaugeFamily m_provider_machines;
    metrics::CounterFamily m_provider_steps;
    metrics::Gauge m_ready;
    metrics::Gauge m_suspended;
};

} // namespace metalsync
