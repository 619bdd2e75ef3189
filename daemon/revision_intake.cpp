#include "daemon/revision_intake.hpp"

#include <spdlog/spdlog.h>

#include "daemon/desired_loading.hpp"
#include "daemon/event_names.hpp"
#include "sources/git_remote_url.hpp"

namespace metalsync {

namespace {

constexpr const char* k_meta_last_tip = "git.last_tip";

std::string short_id(const std::string& id) { return id.substr(0, 12); }

} // namespace

std::vector<DesiredObjectRow> desired_rows(const DesiredState& state)
{
    std::vector<DesiredObjectRow> rows;
    for (const auto& [name, node] : state.nodes) {
        DesiredObjectRow row;
        row.kind = DesiredKind::node;
        row.name = name;
        row.spec_hash = spec_hash(node);
        row.body = to_json(node);
        rows.push_back(std::move(row));
    }
    for (const auto& [name, cls] : state.classes) {
        DesiredObjectRow row;
        row.kind = DesiredKind::node_class;
        row.name = name;
        row.body = {{"name", name}, {"source", {{"file", cls.source.file}, {"line", cls.source.line}}}};
        rows.push_back(std::move(row));
    }
    if (state.has_policy) {
        DesiredObjectRow row;
        row.kind = DesiredKind::policy;
        row.name = state.policy.name;
        row.body = to_json(state.policy);
        rows.push_back(std::move(row));
    }
    for (const auto& k : state.kube_objects) {
        DesiredObjectRow row;
        row.kind = DesiredKind::kube_object;
        row.namespace_ = k.namespace_;
        row.name = k.api_version + "/" + k.kind + "/" + k.name;
        row.body = k.body;
        rows.push_back(std::move(row));
    }
    return rows;
}

void RevisionIntake::restore()
{
    auto last = m_store.last_accepted_revision();
    if (!last || !*last) {
        return;
    }
    auto loaded = load_commit(m_source, (*last)->commit_id, m_loader);
    if (loaded && loaded->state) {
        m_current = std::make_shared<const DesiredState>(std::move(*loaded->state));
        m_current_commit = loaded->commit;
        spdlog::info("revision {}: restored from the store", short_id((*last)->commit_id));
    } else {
        spdlog::warn("revision {}: recorded as accepted but cannot be loaded again from the local clone; waiting "
                     "for the next poll",
                     short_id((*last)->commit_id));
    }
    if (auto tip = m_store.get_meta(k_meta_last_tip); tip && *tip) {
        m_last_tip = **tip;
    }
}

IntakeResult RevisionIntake::poll(double now) { return take(m_source.poll(m_last_tip), now); }

IntakeResult RevisionIntake::take(const std::expected<PollResult, GitError>& polled, double now)
{
    IntakeResult result;
    if (!polled) {
        result.error = polled.error().message;
        spdlog::warn("git: {}", result.error);
        Event e;
        e.time = now;
        e.object_kind = "Git";
        e.object_name = redact_url(m_source.config().url);
        e.name = events::k_git_poll_failed;
        e.message = result.error;
        {
            auto lock = store_lock();
            (void)m_store.add_event(e);
        }
        return result;
    }
    result.polled_ok = true;
    result.commit = polled->commit;
    if (!polled->changed && m_current) {
        return result;
    }
    if (!polled->changed && !m_last_tip.empty() && m_last_tip == polled->commit) {
        return result;  // the same rejected tip: already recorded
    }
    return evaluate(polled->commit, now, polled->history_rewritten);
}

IntakeResult RevisionIntake::evaluate(const std::string& commit, double now, bool rewritten)
{
    IntakeResult result;
    result.polled_ok = true;
    result.commit = commit;
    result.new_revision = true;
    result.history_rewritten = rewritten;
    if (rewritten) {
        spdlog::warn("git: history rewritten (force-push?): {} is not a descendant of {}; following it",
                     short_id(commit), short_id(m_last_tip));
        Event e;
        e.time = now;
        e.object_kind = "Git";
        e.object_name = redact_url(m_source.config().url);
        e.name = events::k_git_history_rewritten;
        e.message = "new tip " + short_id(commit) + " does not descend from " + short_id(m_last_tip);
        e.revision = commit;
        auto lock = store_lock();
        (void)m_store.add_event(e);
    }
    auto loaded = load_commit(m_source, commit, m_loader);
    if (!loaded) {
        result.polled_ok = false;
        result.error = loaded.error();
        return result;
    }
    RevisionRecord record;
    record.commit_id = commit;
    record.author_name = loaded->commit.author_name;
    record.author_email = loaded->commit.author_email;
    record.committed_at = loaded->commit.time;
    record.seen_at = static_cast<std::int64_t>(now);
    Event e;
    e.time = now;
    e.object_kind = "Revision";
    e.object_name = commit;
    e.revision = commit;
    e.author = loaded->commit.author_name;
    if (loaded->state) {
        record.status = RevisionStatus::accepted;
        record.summary = std::to_string(loaded->state->nodes.size()) + " nodes, " +
                         std::to_string(loaded->state->kube_objects.size()) + " Kubernetes objects";
        e.name = events::k_revision_accepted;
        e.message = loaded->commit.summary + " (" + record.summary + ")";
        // Recorded first, in force after: a revision the store could not take
        // (locked, disk full) would be forgotten at the next restart while its
        // actions ran. Not taken now; the next poll tries again.
        auto written = [&]() -> std::expected<void, StoreError> {
            auto lock = store_lock();
            auto tx = m_store.transaction();
            if (!tx) return std::unexpected(tx.error());
            if (auto r = m_store.record_revision(record); !r) return r;
            if (auto r = m_store.save_desired(commit, desired_rows(*loaded->state)); !r) return r;
            if (auto r = m_store.add_event(e); !r) return std::unexpected(r.error());
            if (auto r = m_store.set_meta(k_meta_last_tip, commit); !r) return r;
            return tx->commit();
        }();
        if (!written) {
            result.polled_ok = false;
            result.new_revision = false;
            result.error = "revision " + short_id(commit) + " not taken, it cannot be recorded: " + written.error().message;
            spdlog::error("{}; revision {} stays in force, trying again at the next poll", result.error,
                          m_current ? short_id(m_current->revision) : std::string("(none)"));
            return result;
        }
        m_current = std::make_shared<const DesiredState>(std::move(*loaded->state));
        m_current_commit = loaded->commit;
        result.accepted = true;
        spdlog::info("revision {}: accepted ({}; {} by {})", short_id(commit), record.summary, loaded->commit.summary,
                     loaded->commit.author_name);
    } else {
        record.status = RevisionStatus::rejected;
        for (const auto& d : loaded->state.error()) {
            record.errors.push_back(d.to_string());
            result.rejection.push_back(d.to_string());
        }
        record.summary = std::to_string(record.errors.size()) + " errors";
        e.name = events::k_revision_rejected;
        e.message = std::to_string(record.errors.size()) + " errors, first: " + record.errors.front();
        auto written = [&]() -> std::expected<void, StoreError> {
            auto lock = store_lock();
            auto tx = m_store.transaction();
            if (!tx) return std::unexpected(tx.error());
            if (auto r = m_store.record_revision(record); !r) return r;
            if (auto r = m_store.add_event(e); !r) return std::unexpected(r.error());
            if (auto r = m_store.set_meta(k_meta_last_tip, commit); !r) return r;
            return tx->commit();
        }();
        if (!written) {
            result.polled_ok = false;
            result.new_revision = false;
            result.rejection.clear();
            result.error = "revision " + short_id(commit) + " is invalid and its rejection cannot be recorded: " +
                           written.error().message;
            spdlog::error("{}; trying again at the next poll", result.error);
            return result;
        }
        spdlog::error("revision {}: rejected, {} errors; revision {} stays in force. First: {}", short_id(commit),
                      record.errors.size(), m_current ? short_id(m_current->revision) : std::string("(none)"),
                      record.errors.front());
    }
    m_last_tip = commit;
    return result;
}

} // namespace metalsync
