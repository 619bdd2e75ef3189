#include "daemon/cli.hpp"

int main(int argc, char** argv) { return metalsync::cli_main(argc, argv); }
