# Offline check that api/openapi.yaml documents every route, scope and error code of
# kiln-api (no build, no database). Included from tests/api/CMakeLists.txt.
add_test(NAME api_openapi
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_openapi.py ${PROJECT_SOURCE_DIR})
set_tests_properties(api_openapi PROPERTIES TIMEOUT 60)
