#pragma once

// Stable event names: operators grep and alert on these. Add, never rename.

namespace metalsync::events {

inline constexpr const char* k_revision_accepted = "revision.accepted";
inline constexpr const char* k_revision_rejected = "revision.rejected";
inline constexpr const char* k_git_history_rewritten = "git.history.rewritten";
inline constexpr const char* k_git_poll_failed = "git.poll.failed";
inline constexpr const char* k_node_inspection_matched = "node.inspection.matched";
inline constexpr const char* k_node_inspection_mismatch = "node.inspection.mismatch";

} // namespace metalsync::events
