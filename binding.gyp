# A thin entry for node-gyp, node-gyp-build and prebuildify: the one real build description is
# CMakeLists.txt. The single target runs native/build.mjs (cmake-js) into the intermediate folder
# and copies the module to <(PRODUCT_DIR), where node-gyp-build and prebuildify look for it.
{
  "targets": [
    {
      "target_name": "contranorm",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js",
          "inputs": ["CMakeLists.txt", "native/build.mjs"],
          "outputs": ["<(PRODUCT_DIR)/contranorm.node"],
          "action": [
            "node",
            "native/build.mjs",
            "--out",
            "<(INTERMEDIATE_DIR)/cmake",
            "--copy-to",
            "<(PRODUCT_DIR)"
          ]
        }
      ]
    }
  ]
}
