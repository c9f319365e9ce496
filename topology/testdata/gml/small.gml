# Small fixture for the GML importer: duplicate labels, a node without
# coordinates, an empty label, parallel edges, a self-loop, two components.
Creator "gridemu tests"
graph [
  directed 0
  label "Fixture"
  comment [ nested [ deeper [ value 1.5e3 ] ] text "# not a comment" ]
  node [
    id 0
    label "New York"
    Latitude 40.71427
    Longitude -74.00597
  ]
  node [
    id 1
    label "Chicago"
    Latitude 41.85003
    Longitude -87.65005
  ]
  node [
    id 2
    label "None"
  ]
  node [
    id 3
    label "None"
    Latitude 10
    Longitude 10
  ]
  node [
    id 4
    label "St Kitts &amp; Nevis"
    Latitude 17.3
    Longitude -62.7
  ]
  node [
    id 5
    label ""
  ]
  edge [ source 0 target 1 LinkSpeed "10" LinkSpeedUnits "G" LinkSpeedRaw 10000000000.0 ]
  edge [ source 1 target 0 LinkSpeed "155" LinkSpeedUnits "M" ]
  edge [ source 1 target 2 id "e0" ]
  edge [ source 2 target 2 ]
  edge [ source 3 target 4 LinkSpeed 2.5 LinkSpeedUnits "G" ]
  edge [ source 5 target 3 ]
]
