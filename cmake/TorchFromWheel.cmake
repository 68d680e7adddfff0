# LibTorch from the PyTorch wheel: one LibTorch source on every machine (Debian 12 and 13 alike).
#
# The torch wheel carries the LibTorch headers, TorchConfig.cmake and shared libraries. We ask the
# Python interpreter of the wheel (TITAND_PYTHON, default: the checkout's .venv) where they are, then:
#   - check the wheel's C++ ABI flag against Debian's C++ libraries (gRPC, Abseil, Protobuf are built
#     with _GLIBCXX_USE_CXX11_ABI=1): a mismatch links but crashes at run time, so it stops here;
#   - choose the C++ standard the headers need (torch >= 2.14 requires C++20; 2.6..2.13 accept C++17);
#   - put the wheel's lib/ first on the search path (a Debian libtorch-dev beside it must not win) and
#     in the RPATH of every binary, so nothing needs LD_LIBRARY_PATH.
# Supported: torch 2.6 .. 2.14, CPU or CUDA wheels. Sets TITAND_TORCH_VERSION, TITAND_TORCH_CUDA,
# TITAND_TORCH_LIB_DIR.

set(TITAND_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "Python interpreter whose torch wheel provides LibTorch")
if(NOT EXISTS "${TITAND_PYTHON}")
  message(FATAL_ERROR "titand: no Python at TITAND_PYTHON=${TITAND_PYTHON}. Run scripts/setup.sh (creates "
                      ".venv with the torch wheel) or pass -DTITAND_PYTHON=/path/to/python with torch installed.")
endif()
execute_process(
  COMMAND "${TITAND_PYTHON}" -c
    "import os, torch; print(torch.utils.cmake_prefix_path); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__.split('+')[0]); print(torch.version.cuda or ''); print(os.path.dirname(torch.__file__))"
  OUTPUT_VARIABLE _tw_out ERROR_VARIABLE _tw_err RESULT_VARIABLE _tw_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _tw_rc EQUAL 0)
  message(FATAL_ERROR "titand: ${TITAND_PYTHON} cannot import torch (${_tw_err}). Install the torch wheel "
                      "(scripts/setup.sh) into that interpreter.")
endif()
string(REPLACE "\n" ";" _tw_lines "${_tw_out}")
list(GET _tw_lines 0 _tw_cmake_prefix)
list(GET _tw_lines 1 _tw_abi)
list(GET _tw_lines 2 TITAND_TORCH_VERSION)
list(GET _tw_lines 3 TITAND_TORCH_CUDA)
list(GET _tw_lines 4 _tw_root)

if(TITAND_TORCH_VERSION VERSION_LESS 2.6 OR TITAND_TORCH_VERSION VERSION_GREATER_EQUAL 2.15)
  message(WARNING "titand: torch ${TITAND_TORCH_VERSION} is outside the supported 2.6 .. 2.14 range")
endif()
if(NOT _tw_abi STREQUAL "1")
  message(FATAL_ERROR "titand: the torch wheel at ${_tw_root} was built with _GLIBCXX_USE_CXX11_ABI=0, but "
                      "Debian's gRPC/Abseil/Protobuf use the C++11 ABI (=1); linking them together would fail "
                      "at run time. Use a torch wheel built with the C++11 ABI (every wheel from torch 2.7 on, "
                      "or the 'cxx11-abi' LibTorch builds).")
endif()
if(TITAND_TORCH_VERSION VERSION_GREATER_EQUAL 2.14 AND CMAKE_CXX_STANDARD LESS 20)
  set(CMAKE_CXX_STANDARD 20)   # torch 2.14's ATen/ATen.h stops with "C++20 or later required"
endif()

set(TITAND_TORCH_LIB_DIR "${_tw_root}/lib")
# TorchConfig.cmake looks for Caffe2 (its imported targets) on the default paths first, where a Debian
# libtorch-dev's Caffe2Config would win: pin every package of the wheel to its own folder.
foreach(_tw_pkg Torch Caffe2 ATen Tensorpipe)
  set(${_tw_pkg}_DIR "${_tw_cmake_prefix}/${_tw_pkg}" CACHE PATH "from the torch wheel" FORCE)
endforeach()
# Only the library search is pointed at the wheel, and only while torch's package runs: the wheel also
# carries its own protoc (3.13) in bin/, which must not replace Debian's for our .proto files.
set(_tw_saved_library_path "${CMAKE_LIBRARY_PATH}")
list(PREPEND CMAKE_LIBRARY_PATH "${_tw_root}/lib")
find_package(Torch REQUIRED CONFIG PATHS "${_tw_cmake_prefix}/Torch" NO_DEFAULT_PATH)
set(CMAKE_LIBRARY_PATH "${_tw_saved_library_path}")

# Every library torch's package resolved must come from the wheel, not from a system LibTorch.
foreach(_tw_lib IN LISTS TORCH_LIBRARIES TORCH_LIBRARY C10_LIBRARY)
  # (CUDA wheels also list CUDA libraries from the nvidia-* wheels or a toolkit: only torch's own are checked)
  if(_tw_lib MATCHES "^/.*/lib(torch|c10)[^/]*$" AND NOT _tw_lib MATCHES "^${_tw_root}/")
    message(FATAL_ERROR "titand: torch library ${_tw_lib} is not from the wheel at ${_tw_root} (a system "
                        "LibTorch, e.g. Debian's libtorch-dev, was found first). Remove it or clear the CMake cache.")
  endif()
endforeach()
foreach(_tw_tgt torch torch_library c10 torch_cpu torch_cuda c10_cuda)
  if(TARGET ${_tw_tgt})
    get_target_property(_tw_cfgs ${_tw_tgt} IMPORTED_CONFIGURATIONS)
    set(_tw_props IMPORTED_LOCATION)
    foreach(_tw_cfg IN LISTS _tw_cfgs)
      list(APPEND _tw_props IMPORTED_LOCATION_${_tw_cfg})
    endforeach()
    foreach(_tw_prop IN LISTS _tw_props)
      get_target_property(_tw_loc ${_tw_tgt} ${_tw_prop})
      if(_tw_loc AND NOT _tw_loc MATCHES "^${_tw_root}/")
        message(FATAL_ERROR "titand: target ${_tw_tgt} resolves to ${_tw_loc}, not the wheel at ${_tw_root} "
                            "(a system LibTorch such as Debian's libtorch-dev was found first)")
      endif()
    endforeach()
  endif()
endforeach()

# Binaries find the wheel's shared libraries through their RPATH (build tree and install alike).
# $ORIGIN/../lib/site-packages/torch/lib: the runtime images' layout (deploy/docker/collect.sh).
list(APPEND CMAKE_BUILD_RPATH "${TITAND_TORCH_LIB_DIR}" "\$ORIGIN/../lib/site-packages/torch/lib")
list(APPEND CMAKE_INSTALL_RPATH "${TITAND_TORCH_LIB_DIR}" "\$ORIGIN/../lib/site-packages/torch/lib")
if(TITAND_TORCH_CUDA)
  set(_tw_kind "CUDA ${TITAND_TORCH_CUDA}")
else()
  set(_tw_kind "CPU")
endif()
message(STATUS "titand: LibTorch ${TITAND_TORCH_VERSION} (${_tw_kind}) from ${_tw_root}, C++${CMAKE_CXX_STANDARD}")
