# gridemu_add_module(NAME SOURCES src1.cc ... DEPS dep1 ...)
# One static library per module (DESIGN.md §2): public headers in include/,
# private code in src/. The target is named gridemu_<NAME>.
function(gridemu_add_module NAME)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(gridemu_${NAME} STATIC ${ARG_SOURCES})
  target_include_directories(gridemu_${NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(gridemu_${NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  add_library(gridemu::${NAME} ALIAS gridemu_${NAME})
endfunction()

# gridemu_add_test(NAME SOURCES a.cc ... DEPS ... [LABELS root])
# A GoogleTest executable registered with ctest. Tests labelled "root" need
# root and create real namespaces; they are skipped (not failed) without root.
function(gridemu_add_test NAME)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${NAME} ${ARG_SOURCES})
  target_link_libraries(${NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  gtest_discover_tests(${NAME}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "GRIDEMU_SOURCE_DIR=${PROJECT_SOURCE_DIR};GRIDEMU_SHARED_DIR=${PROJECT_SOURCE_DIR}/../shared"
    DISCOVERY_TIMEOUT 60)
endfunction()

# gridemu_require_targets(TARGET ...): stops the configure step with an error
# that names the directory and every target it needs that is not defined (a
# module missing from the top-level list, or listed after its users), instead
# of leaving the directory out of the build without a word.
function(gridemu_require_targets)
  set(missing)
  foreach(t ${ARGN})
    if(NOT TARGET ${t})
      list(APPEND missing ${t})
    endif()
  endforeach()
  if(missing)
    string(REPLACE ";" ", " missing "${missing}")
    message(FATAL_ERROR "${CMAKE_CURRENT_SOURCE_DIR}: needs CMake target(s) ${missing}, "
                        "which are not defined (check the module list and its order in the "
                        "top-level CMakeLists.txt)")
  endif()
endfunction()
