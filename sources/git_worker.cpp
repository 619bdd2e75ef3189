#include "sources/git_worker.hpp"

namespace metalsync {

// Placeholder until the Git source lands (being written now).
std::optional<int> maybe_run_git_worker(int /*argc*/, char** /*argv*/) { return std::nullopt; }

} // namespace metalsync
