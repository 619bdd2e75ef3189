#include "store/records.hpp"

namespace metalsync {

const char* to_string(RevisionStatus status)
{
    switch (status) {
    case RevisionStatus::accepted: return "accepted";
    case RevisionStatus::rejected: return "rejected";
    }
    return "rejected";
}

const char* to_string(DesiredKind kind)
{
    switch (kind) {
    case DesiredKind::node: return "Node";
    case DesiredKind::node_class: return "NodeClass";
    case DesiredKind::policy: return "Policy";
    case DesiredKind::kube_object: return "KubeObject";
    }
    return "KubeObject";
}

const char* to_string(JournalState state)
{
    switch (state) {
    case JournalState::pending: return "pending";
    case JournalState::running: return "running";
    case JournalState::done: return "done";
    case JournalState::failed: return "failed";
    case JournalState::cancelled: return "cancelled";
    }
    return "failed";
}

std::optional<RevisionStatus> parse_revision_status(std::string_view text)
{
    for (auto status : {RevisionStatus::accepted, RevisionStatus::rejected}) {
        if (text == to_string(status)) {
            return status;
        }
    }
    return std::nullopt;
}

std::optional<DesiredKind> parse_desired_kind(std::string_view text)
{
    for (auto kind : {DesiredKind::node, DesiredKind::node_class, DesiredKind::policy, DesiredKind::kube_object}) {
        if (text == to_string(kind)) {
            return kind;
        }
    }
    return std::nullopt;
}

std::optional<JournalState> parse_journal_state(std::string_view text)
{
    for (auto state : {JournalState::pending, JournalState::running, JournalState::done, JournalState::failed,
                       JournalState::cancelled}) {
        if (text == to_string(state)) {
            return state;
        }
    }
    return std::nullopt;
}

bool is_finished(JournalState state)
{
    return state == JournalState::done || state == JournalState::failed || state == JournalState::cancelled;
}

} // namespace metalsync
