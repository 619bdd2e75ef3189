#pragma once

// The Git half of a daemon tick: poll the remote, load a new tip, record it
// in the store as accepted or rejected (with every reason), and keep the last
// good desired state in force. Stage, check, commit: a rejected revision
// changes nothing but the record of its rejection.

#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "sources/desired_state.hpp"
#include "sources/git_source.hpp"
#include "sources/revision_loader.hpp"
#include "store/store.hpp"

namespace metalsync {

struct IntakeResult {
    bool polled_ok = false;
    std::string error;             // poll or snapshot failure, worded for operators
    bool new_revision = false;     // the tip moved and was evaluated
    bool accepted = false;         // ... and became the revision in force
    bool history_rewritten = false;
    std::string commit;            // the tip evaluated this time (may be rejected)
    std::vector<std::string> rejection;  // diagnostics of a rejected tip
};

class RevisionIntake {
public:
    // `store_mutex`: the lock every other writer of `store` takes (the
    // executor's workers, the Kubernetes worker); held only around writes,
    // never while a revision is parsed.
    RevisionIntake(GitSource& source, Store& store, std::recursive_mutex* store_mutex = nullptr)
        : m_source(source), m_store(store), m_store_mutex(store_mutex)
    {
    }

    // Restores the revision in force from the store (after a restart): the
    // last accepted commit is loaded again from the local clone.
    void restore();

    // poll() = take(source.poll(last_tip()), now), on one thread. The daemon
    // runs the network half, GitSource::poll, on a thread of its own (a
    // stalled remote must not stall observation, the watchdog or SIGTERM)
    // and hands its answer to take() on the loop thread; the two never
    // overlap, as GitSource is not for concurrent use.
    IntakeResult poll(double now);
    IntakeResult take(const std::expected<PollResult, GitError>& polled, double now);
    [[nodiscard]] const std::string& last_tip() const { return m_last_tip; }

    // The desired state in force: the last accepted revision, if any.
    [[nodiscard]] std::shared_ptr<const DesiredState> current() const { return m_current; }
    [[nodiscard]] const CommitInfo& current_commit() const { return m_current_commit; }
    [[nodiscard]] const RevisionLoader& loader() const { return m_loader; }

private:
    IntakeResult evaluate(const std::string& commit, double now, bool rewritten);

    GitSource& m_source;
    Store& m_store;
    std::recursive_mutex* m_store_mutex = nullptr;
    [[nodiscard]] std::unique_lock<std::recursive_mutex> store_lock() const
    {
        return m_store_mutex ? std::unique_lock<std::recursive_mutex>(*m_store_mutex) : std::unique_lock<std::recursive_mutex>();
    }
    RevisionLoader m_loader;
    std::shared_ptr<const DesiredState> m_current;
    CommitInfo m_current_commit;
    std::string m_last_tip;  // last tip evaluated, accepted or not
};

// Rows for the store's desired_objects table (no credentials in them).
std::vector<DesiredObjectRow> desired_rows(const DesiredState& state);

} // namespace metalsync
