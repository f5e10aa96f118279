# cmake -DINPUT=<openapi.json> -DOUTPUT=<file.cpp> -P embed_openapi.cmake
# Writes a .cpp defining kontor::gateway::openapi_document() with the file's text, so the JSON
# file in the source tree is the one source of truth. Fails the build when the file is not
# JSON or lacks an "openapi" 3.0.x version.
file(READ "${INPUT}" content)
string(JSON version ERROR_VARIABLE error GET "${content}" openapi)
if(error)
  message(FATAL_ERROR "${INPUT} is not an OpenAPI JSON document: ${error}")
endif()
if(NOT version MATCHES "^3\\.0\\.[0-9]+$")
  message(FATAL_ERROR "${INPUT}: openapi is '${version}', expected 3.0.x")
endif()
set(delimiter "kontor_openapi")
string(FIND "${content}" ")${delimiter}" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter ')${delimiter}'")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_openapi.cmake; edit that file instead.\n"
  "#include <string_view>\n\n"
  "#include \"gateway/api.hpp\"\n\n"
  "namespace kontor::gateway {\n\n"
  "std::string_view openapi_document() {\n"
  "  static constexpr std::string_view text = R\"${delimiter}(${content})${delimiter}\";\n"
  "  return text;\n"
  "}\n\n"
  "} // namespace kontor::gateway\n")
# Only touch the output when it changed (no rebuild of what depends on it otherwise).
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
