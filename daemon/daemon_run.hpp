#pragma once
#include <string>
namespace metalsync {
struct DaemonOptions { std::string config = "/etc/metalsync/metalsync.yaml"; bool check_config = false; std::string log_format; };
int run_daemon(const DaemonOptions& options);
}
