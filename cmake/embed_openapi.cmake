# cmake -DINPUT=<openapi.json> -DOUTPUT=<file.cpp> -P embed_openapi.cmake
# Writes a .cpp defining kontor::gateway::openapi_document() with the file's text (through
# embed_text.cmake). Fails the build when the file is not JSON or lacks an "openapi" 3.0.x
# version.
file(READ "${INPUT}" content)
string(JSON version ERROR_VARIABLE error GET "${content}" openapi)
if(error)
  message(FATAL_ERROR "${INPUT} is not an OpenAPI JSON document: ${error}")
endif()
if(NOT version MATCHES "^3\\.0\\.[0-9]+$")
  message(FATAL_ERROR "${INPUT}: openapi is '${version}', expected 3.0.x")
endif()
set(FUNCTION openapi_document)
include(${CMAKE_CURRENT_LIST_DIR}/embed_text.cmake)
