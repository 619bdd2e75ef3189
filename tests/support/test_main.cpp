#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "sources/git_worker.hpp"
#include "tests/support/test_support.hpp"

namespace metalsync::test {

bool any_failure()
{
    const auto* cs = doctest::detail::g_cs;
    return cs != nullptr && (cs->numAssertsFailed > 0 || cs->numAssertsFailedCurrentTest_atomic > 0);
}

} // namespace metalsync::test

// The Git source runs its network calls in a child process started from
// /proc/self/exe; every test executable answers that entry point just as the
// metalsync binary does.
int main(int argc, char** argv)
{
    if (auto code = metalsync::maybe_run_git_worker(argc, argv)) {
        return *code;
    }
    doctest::Context context;
    context.applyCommandLine(argc, argv);
    return context.run();
}
