#pragma once

namespace metalsync {

// The `metalsync` command line: every subcommand. main() is only this call.
int cli_main(int argc, char** argv);

} // namespace metalsync
