# install.cmake — what `cmake --install` puts where, and the files that let
# an application find annex: a pkg-config file and a CMake package.
#
# Included at the end of the top-level CMakeLists.txt, after the targets
# annex (MODULE) and annex_static (STATIC, OUTPUT_NAME annex) exist.
#
# Layout under the prefix (GNUInstallDirs: LIBDIR is lib, or
# lib/<multiarch> when the prefix is /usr on Debian):
#
#   LIBDIR/annex/annex.so                 the loadable extension; load it as
#                                         ".load PREFIX/LIBDIR/annex/annex"
#                                         (its own folder: it is a module,
#                                         not a library to link with -l)
#   LIBDIR/libannex.a                     the static library (SQLITE_CORE)
#   INCLUDEDIR/annex.h                    the public header
#   LIBDIR/pkgconfig/annex.pc             pkg-config --cflags --libs annex
#                                         pkg-config --variable=extension annex
#   LIBDIR/cmake/annex/annexConfig.cmake  find_package(annex): imported
#   LIBDIR/cmake/annex/annexConfigVersion.cmake   targets annex::annex_static
#   LIBDIR/cmake/annex/annexTargets*.cmake        (link it) and annex::annex
#                                         (the module: $<TARGET_FILE:...>),
#                                         plus annex_EXTENSION, the module's
#                                         path without its suffix, ready for
#                                         sqlite3_load_extension()
#
#   cmake -S . -B build && cmake --build build
#   cmake --install build --prefix /opt/annex
#
# Components: "runtime" (annex.so alone) and "development" (the rest), e.g.
# cmake --install build --component runtime.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The version is the one the extension reports (annex_version()).
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../ext/vtab/annex_int.h" _annex_version_line
     REGEX "^#define[ \t]+ANNEX_VERSION[ \t]+\"[^\"]+\"")
string(REGEX REPLACE ".*\"([^\"]+)\".*" "\\1" ANNEX_VERSION_STRING "${_annex_version_line}")
if(NOT ANNEX_VERSION_STRING MATCHES "^[0-9]+(\\.[0-9]+)*$")
  message(FATAL_ERROR "install.cmake: no ANNEX_VERSION in ext/vtab/annex_int.h")
endif()

set(ANNEX_INSTALL_MODULEDIR "${CMAKE_INSTALL_LIBDIR}/annex" CACHE STRING
    "Folder of the loadable extension annex.so, relative to the prefix")
set(ANNEX_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/annex" CACHE STRING
    "Folder of annexConfig.cmake, relative to the prefix")

# annex_static's include folders point into the source tree; an installed
# copy must point at INCLUDEDIR instead (SQLite's own come from the
# SQLite::SQLite3 target it links).
get_target_property(_annex_inc annex_static INTERFACE_INCLUDE_DIRECTORIES)
set(_annex_inc_new "")
foreach(_d IN LISTS _annex_inc)
  if(_d MATCHES "^\\$<")
    list(APPEND _annex_inc_new "${_d}")
  else()
    list(APPEND _annex_inc_new "$<BUILD_INTERFACE:${_d}>")
  endif()
endforeach()
list(APPEND _annex_inc_new "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
set_target_properties(annex_static PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${_annex_inc_new}")

install(TARGETS annex EXPORT annexTargets
  LIBRARY DESTINATION "${ANNEX_INSTALL_MODULEDIR}" COMPONENT runtime)
install(TARGETS annex_static EXPORT annexTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT development)
install(FILES "${CMAKE_CURRENT_LIST_DIR}/../ext/annex.h"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT development)
install(EXPORT annexTargets NAMESPACE annex::
  DESTINATION "${ANNEX_INSTALL_CMAKEDIR}" COMPONENT development)

# ------------------------------------------------------------ CMake package
# The exported annex_static links SQLite::SQLite3 and, when annex was built
# with it, OpenMP::OpenMP_C: the config finds both before the targets.
if(OpenMP_C_FOUND)
  set(ANNEX_CONFIG_OPENMP 1)
else()
  set(ANNEX_CONFIG_OPENMP 0)
endif()
# (the template is written as is: configure_package_config_file fills it in)
file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/annexConfig.cmake.in" [=[
# annexConfig.cmake — find_package(annex) for the annex SQLite extension.
#
#   find_package(annex REQUIRED)
#   target_link_libraries(app PRIVATE annex::annex_static)  # then call
#                                   # sqlite3_annex_init() from annex.h
#
# Also defined: annex::annex (the loadable module annex.so, imported),
# annex_EXTENSION (its path without the suffix, for sqlite3_load_extension
# or ".load"), annex_VERSION, annex_INCLUDE_DIR.
@PACKAGE_INIT@

include(CMakeFindDependencyMacro)
find_dependency(SQLite3)
if(@ANNEX_CONFIG_OPENMP@)
  find_dependency(OpenMP COMPONENTS C)
endif()

include("${CMAKE_CURRENT_LIST_DIR}/annexTargets.cmake")

set_and_check(annex_INCLUDE_DIR "@PACKAGE_CMAKE_INSTALL_INCLUDEDIR@")
set(annex_EXTENSION "@PACKAGE_ANNEX_INSTALL_MODULEDIR@/annex")
check_required_components(annex)
]=])
configure_package_config_file(
  "${CMAKE_CURRENT_BINARY_DIR}/annexConfig.cmake.in"
  "${CMAKE_CURRENT_BINARY_DIR}/annexConfig.cmake"
  INSTALL_DESTINATION "${ANNEX_INSTALL_CMAKEDIR}"
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR ANNEX_INSTALL_MODULEDIR)
write_basic_package_version_file(
  "${CMAKE_CURRENT_BINARY_DIR}/annexConfigVersion.cmake"
  VERSION "${ANNEX_VERSION_STRING}" COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/annexConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/annexConfigVersion.cmake"
  DESTINATION "${ANNEX_INSTALL_CMAKEDIR}" COMPONENT development)

# --------------------------------------------------------------- pkg-config
# libannex.a is the only library, so what it needs goes in Libs itself
# (Libs.private would be dropped without --static): SQLite, libm, libdl
# (dlopen of BLAS; empty on platforms without it) and OpenMP's flag.
set(ANNEX_PC_LIBS "-lsqlite3 -lm")
foreach(_l IN LISTS CMAKE_DL_LIBS)
  string(APPEND ANNEX_PC_LIBS " -l${_l}")
endforeach()
if(OpenMP_C_FOUND)
  string(APPEND ANNEX_PC_LIBS " ${OpenMP_C_FLAGS}")
endif()
# Paths relative to the prefix where they can be, so the tree can move.
foreach(_v LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_v}}")
    set(ANNEX_PC_${_v} "${CMAKE_INSTALL_${_v}}")
  else()
    set(ANNEX_PC_${_v} "\${prefix}/${CMAKE_INSTALL_${_v}}")
  endif()
endforeach()
if(IS_ABSOLUTE "${ANNEX_INSTALL_MODULEDIR}")
  set(ANNEX_PC_MODULEDIR "${ANNEX_INSTALL_MODULEDIR}")
else()
  set(ANNEX_PC_MODULEDIR "\${prefix}/${ANNEX_INSTALL_MODULEDIR}")
endif()
set(ANNEX_PC_PREFIX_TOKEN "@ANNEX_INSTALL_PREFIX@")
file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/annex.pc.in" @ONLY
     CONTENT [=[
prefix=@ANNEX_PC_PREFIX_TOKEN@
libdir=@ANNEX_PC_LIBDIR@
includedir=@ANNEX_PC_INCLUDEDIR@
moduledir=@ANNEX_PC_MODULEDIR@
# the loadable extension, without its suffix, for sqlite3_load_extension()
extension=${moduledir}/annex

Name: annex
Description: SQLite extension that makes one SQLite file a vector database (static library; sqlite3_annex_init)
Version: @ANNEX_VERSION_STRING@
Cflags: -I${includedir}
Libs: -L${libdir} -lannex @ANNEX_PC_LIBS@
]=])
# The prefix is the one given at install time (cmake --install --prefix).
install(CODE "
  file(READ \"${CMAKE_CURRENT_BINARY_DIR}/annex.pc.in\" _annex_pc)
  string(REPLACE \"@ANNEX_INSTALL_PREFIX@\" \"\${CMAKE_INSTALL_PREFIX}\" _annex_pc \"\${_annex_pc}\")
  file(WRITE \"${CMAKE_CURRENT_BINARY_DIR}/annex.pc\" \"\${_annex_pc}\")
" COMPONENT development)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/annex.pc"
  DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig" COMPONENT development)
