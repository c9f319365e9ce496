# only a comment
Creator "x"
