# Included right after llama-cpp-python's project() (CMAKE_PROJECT_llama_cpp_INCLUDE); both
# hooks run once its CMakeLists has defined every target.
#
# 1. llama-cpp-python forces LLAMA_BUILD_COMMON on, but nothing it installs links llama.cpp's
#    `common` library (argument parsing, chat parsers, JSON templating: the slowest sources
#    to compile); only the CLI tools do, and those are not built. llama.cpp still installs
#    the library, so it is built from one empty source instead of its own.
# 2. With GGML_CPU_ALL_VARIANTS, ggml builds one CPU library per x86 level
#    (libggml-cpu-haswell.so ... -sapphirerapids.so), but llama-cpp-python installs only the
#    libraries it names. Install every variant beside libggml.so, where gemserve picks one at
#    run time (gemserve/engine/llama/variants.py).
# 3. libllama gets one more exported function, embedding_eval.c's `gemserve_embedding_eval`:
#    the eval callback that lets an embedding context skip the LM head. gemserve looks it up
#    at run time and works without it (a llama-cpp-python built elsewhere).
set(_GEMSERVE_HOOKS_DIR "${CMAKE_CURRENT_LIST_DIR}")
function(_gemserve_trim_and_install)
    if(TARGET llama-common)
        set(stub "${CMAKE_BINARY_DIR}/gemserve-empty-common.cpp")
        file(WRITE "${stub}" "// llama.cpp's common library: not used by llama-cpp-python\n")
        set_property(TARGET llama-common PROPERTY SOURCES "${stub}")
    endif()
    get_property(ggml_targets DIRECTORY "${CMAKE_SOURCE_DIR}/vendor/llama.cpp/ggml/src"
                 PROPERTY BUILDSYSTEM_TARGETS)
    if(TARGET llama)
        target_sources(llama PRIVATE "${_GEMSERVE_HOOKS_DIR}/embedding_eval.c")
    endif()
    foreach(target IN LISTS ggml_targets)
        if(target MATCHES "^ggml-cpu-")
            llama_cpp_python_install_target(${target})
        endif()
    endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _gemserve_trim_and_install)
