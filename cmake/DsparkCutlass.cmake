# SPDX-License-Identifier: Apache-2.0
# CUTLASS/CuTe headers for CUDA kernels. Sets DSPARK_WITH_CUTLASS and DSPARK_CUTLASS_INCLUDE_DIRS.
# Headers come from DSPARK_CUTLASS_DIR, else the nvidia-cutlass wheel in the build's Python, else
# (isolated builds cannot see a venv's wheel) a headers-only download of that wheel with pip. If
# all fail: DSPARK_CUTLASS=ON is a hard error, AUTO a warning (dspark.backends() reports
# cutlass=False).
set(DSPARK_WITH_CUTLASS OFF)
if(DSPARK_CUTLASS STREQUAL "ON" AND NOT DSPARK_WITH_CUDA)
  message(FATAL_ERROR "dspark: DSPARK_CUTLASS=ON needs the CUDA backend (DSPARK_CUDA=AUTO|ON and nvcc)")
endif()
if(DSPARK_WITH_CUDA AND NOT DSPARK_CUTLASS STREQUAL "OFF")
  set(_cutlass_root "${DSPARK_CUTLASS_DIR}")
  if(NOT _cutlass_root)
    execute_process(
      COMMAND ${Python_EXECUTABLE} -c
        "import importlib.util as u, os; s = u.find_spec('cutlass_library'); print(os.path.join(s.submodule_search_locations[0], 'source') if s else '')"
      OUTPUT_VARIABLE _cutlass_root OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  if(NOT (_cutlass_root AND EXISTS "${_cutlass_root}/include/cute/tensor.hpp"))
    # An isolated build (plain `pip install .`) cannot see a venv's wheel: fetch the headers-only
    # nvidia-cutlass wheel (6 MB, no dependencies) from the package index with pip itself.
    set(_fetched "${CMAKE_BINARY_DIR}/_cutlass")
    if(NOT EXISTS "${_fetched}/cutlass_library/source/include/cute/tensor.hpp")
      message(STATUS "dspark: fetching CUTLASS headers (pip download nvidia-cutlass==4.2.0.0)")
      execute_process(
        COMMAND ${Python_EXECUTABLE} -c [=[
import os, pathlib, subprocess, sys, tempfile, zipfile
out = pathlib.Path(sys.argv[1])
# pip's build isolation hides the interpreter's own site-packages (and pip with it) through
# PYTHONPATH; the download runs with the interpreter's normal environment instead.
env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
with tempfile.TemporaryDirectory() as d:
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "nvidia-cutlass==4.2.0.0", "-d", d], capture_output=True, text=True,
                       timeout=300, env=env)
    if r.returncode:
        sys.exit((r.stderr.strip().splitlines() or ["pip failed"])[-1])
    for whl in pathlib.Path(d).glob("*.whl"):
        with zipfile.ZipFile(whl) as z:
            z.extractall(out, [n for n in z.namelist() if n.startswith("cutlass_library/source/")])
]=] "${_fetched}"
        RESULT_VARIABLE _fetch_rc OUTPUT_QUIET ERROR_VARIABLE _fetch_err)
      if(NOT _fetch_rc EQUAL 0)
        string(REGEX REPLACE ".*\n([^\n]+\n?)$" "\\1" _fetch_last "${_fetch_err}")
        message(STATUS "dspark: CUTLASS download failed: ${_fetch_last}")
      endif()
    endif()
    if(EXISTS "${_fetched}/cutlass_library/source/include/cute/tensor.hpp")
      set(_cutlass_root "${_fetched}/cutlass_library/source")
    endif()
  endif()
  if(_cutlass_root AND EXISTS "${_cutlass_root}/include/cute/tensor.hpp")
    set(DSPARK_WITH_CUTLASS ON)
    set(DSPARK_CUTLASS_INCLUDE_DIRS "${_cutlass_root}/include" "${_cutlass_root}/tools/util/include")
    message(STATUS "dspark: CUTLASS/CuTe headers at ${_cutlass_root}")
  elseif(DSPARK_CUTLASS STREQUAL "ON")
    message(FATAL_ERROR "dspark: DSPARK_CUTLASS=ON but no CUTLASS headers were found "
      "(looked in DSPARK_CUTLASS_DIR='${DSPARK_CUTLASS_DIR}' and the nvidia-cutlass wheel of "
      "${Python_EXECUTABLE}). Install `nvidia-cutlass==4.2.0.0` and build with "
      "`pip install --no-build-isolation .`, or set DSPARK_CUTLASS_DIR.")
  else()
    message(WARNING "dspark: CUTLASS headers NOT found: CUTLASS/CuTe kernels will NOT be built. "
      "An isolated `pip install .` cannot see a venv's nvidia-cutlass; use --no-build-isolation or "
      "DSPARK_CUTLASS_DIR, or DSPARK_CUTLASS=ON to make this an error.")
  endif()
endif()
