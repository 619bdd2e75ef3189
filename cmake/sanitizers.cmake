# Sanitizer and fuzzing builds. Each is a separate build tree:
#
#   cmake -S . -B build-asan -DMETALSYNC_SANITIZE=address,undefined
#   cmake -S . -B build-tsan -DMETALSYNC_SANITIZE=thread
#   CC=clang-19 CXX=clang++-19 cmake -S . -B build-fuzz -DMETALSYNC_FUZZ=ON
#
# scripts/test-sanitizers and scripts/fuzz drive them. Included from the root
# CMakeLists.txt after the warning options and before any target, so every
# library, test and tool of the tree is built with the same instrumentation
# (ASan's container annotations and TSan both need that).

set(METALSYNC_SANITIZE "" CACHE STRING
    "Comma-separated -fsanitize= list, e.g. address,undefined or thread; empty: none")
option(METALSYNC_FUZZ "Build the libFuzzer targets under fuzz/ (clang only)" OFF)

if(METALSYNC_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "METALSYNC_FUZZ needs clang (libFuzzer): CC=clang-19 CXX=clang++-19 cmake ...")
  endif()
  if(METALSYNC_SANITIZE STREQUAL "")
    set(METALSYNC_SANITIZE "address,undefined")
  endif()
  # The root file's -Wno-maybe-uninitialized and -Wno-restrict silence g++
  # false positives; clang does not know them and says so.
  add_compile_options(-Wno-unknown-warning-option)
  # libstdc++ 12's own std::stable_sort calls std::get_temporary_buffer, which
  # it marks deprecated in C++17; g++ hides that inside the system header,
  # clang 19 reports it at our call site. The g++ build keeps the warning.
  add_compile_options(-Wno-deprecated-declarations)
endif()

if(NOT METALSYNC_SANITIZE STREQUAL "")
  string(REPLACE "," ";" _metalsync_sanitizers "${METALSYNC_SANITIZE}")
  if("thread" IN_LIST _metalsync_sanitizers AND "address" IN_LIST _metalsync_sanitizers)
    message(FATAL_ERROR "METALSYNC_SANITIZE: thread and address cannot be combined")
  endif()
  set(_metalsync_sanitize_flags -fsanitize=${METALSYNC_SANITIZE} -fno-omit-frame-pointer)
  if("undefined" IN_LIST _metalsync_sanitizers)
    # A UBSan finding aborts (and so fails the test) instead of printing and
    # going on. float-divide-by-zero is not in "undefined" with g++; it is
    # well defined for IEEE doubles, so leave it out with clang too.
    list(APPEND _metalsync_sanitize_flags -fno-sanitize-recover=all)
  endif()
  add_compile_options(${_metalsync_sanitize_flags})
  add_link_options(${_metalsync_sanitize_flags})
  message(STATUS "metalsync: sanitizers ${METALSYNC_SANITIZE}")
endif()

if(METALSYNC_FUZZ)
  # Libraries get the coverage instrumentation; fuzz/ links the fuzzer main.
  add_compile_options(-fsanitize=fuzzer-no-link)
  add_compile_definitions(METALSYNC_FUZZING=1)
  # The library targets fuzz/ links are defined later in the root file;
  # target names are resolved when the build system is generated.
  add_subdirectory(${CMAKE_SOURCE_DIR}/fuzz ${CMAKE_BINARY_DIR}/fuzz)
endif()
