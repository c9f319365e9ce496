graph [
  node [ id 1 Latitude 95 ]
  node [ id "two" ]
  edge [ target 1 ]
  edge [ source 1 target 1 LinkSpeed "fast" ]
  edge [ source 1 target 1 LinkSpeed 1 LinkSpeedUnits "X" ]
  weird @ 12abc
  key
]
