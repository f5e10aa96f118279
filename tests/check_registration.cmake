# cmake "-DBYPASSING=<folders>" -P check_registration.cmake
# Fails when a suite registered its tests with catch_discover_tests directly instead of
# kontor_catch_tests (tests/CMakeLists.txt): without -w NoTests, a test whose name matches
# nothing passes without running.
if(BYPASSING)
  message(FATAL_ERROR "use kontor_catch_tests(<target> <label>) instead of catch_discover_tests"
                      " in:${BYPASSING}")
endif()
