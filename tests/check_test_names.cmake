# cmake -DTEST_EXECUTABLE=<Catch2 suite> -P check_test_names.cmake
# Fails when a test of the suite cannot be run under ctest by its name: Catch2 reads a name that
# starts with '-' as a flag (with '--help' it prints usage and exits 0, so the test never runs),
# and CMake splits a name with ';' into two ctest tests.
execute_process(COMMAND "${TEST_EXECUTABLE}" --list-test-names-only
                OUTPUT_VARIABLE names RESULT_VARIABLE rc)
if(rc LESS 0)
  message(FATAL_ERROR "cannot list the tests of ${TEST_EXECUTABLE}: ${rc}")
endif()
if(names MATCHES "(^|\n)(-[^\n]*)")
  message(FATAL_ERROR "test name starts with '-', Catch2 reads it as a flag: '${CMAKE_MATCH_2}'")
endif()
if(names MATCHES "(^|\n)([^\n]*;[^\n]*)")
  message(FATAL_ERROR "test name contains ';', CMake splits it: '${CMAKE_MATCH_2}'")
endif()
