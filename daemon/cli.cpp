#include "daemon/cli.hpp"

#include "sources/git_worker.hpp"

namespace metalsync {

int cli_main(int argc, char** argv)
{
    if (auto code = maybe_run_git_worker(argc, argv)) {
        return *code;
    }
    return 0;
}

} // namespace metalsync
